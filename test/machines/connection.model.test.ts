/**
 * Model-based test of the connection machine with `xstate/graph`.
 *
 * 1. The machine's transitions are enumerated statically: every state node walked down from `machine.root` (the
 *    root included, whose `on` holds SETTINGS.UPDATE) and every guarded branch of every `on` (delayed `after`
 *    transitions would appear there too; `always` is walked separately; the machine has neither today).
 * 2. Paths are generated (getShortestPaths, getSimplePaths) over the machine stepped together with a clock, driven
 *    by symbolic events: sync requests attended / unattended at `now` or exactly on the boundaries (last ms of the
 *    90-day consent and the ms it expires, the ms before / at which the oldest of 4 unattended accesses leaves the
 *    24 h window), reports of the active sync with every error shape, stale reports, settings changes, RECREATED.
 *    A vertex is an exact abstraction of what the machine's future depends on (times relative to the clock), so a
 *    path means the same from any representative. Shortest paths reach every abstract state; one-edge extensions
 *    add any transition or refusal reason no shortest path takes. Every transition must be covered.
 * 3. Every path is replayed on a live actor of the real machine (createActor), its symbolic events resolved against
 *    the live snapshot and clock (time never runs backwards). At each step the live actor must take the model's
 *    transition (or refusal), land in the model's state, and agree, context and all, with an independent
 *    reference of the rules (connection.fixtures.ts, referenceStep) and with `refusalReason`.
 */
import { isDeepStrictEqual } from 'node:util';
import { describe, expect, it } from 'vitest';
import { createActor, fromTransition, getInitialSnapshot, getNextSnapshot, type AnyStateMachine, type AnyStateNode, type SnapshotFrom } from 'xstate';
import { getShortestPaths, getSimplePaths, getStateNodes, type StatePath } from 'xstate/graph';
import type { SyncError } from '../../machines/canonical.js';
import {
  connectionMachine,
  refusalReason,
  type ConnectionContext,
  type ConnectionEvent,
  type ConnectionInput,
  type ConnectionState,
  type RefusalReason,
} from '../../machines/connection.js';
import {
  DAY,
  directUpgrade,
  ELIGIBLE,
  KNOWN_BUGS,
  movedAway,
  multiUpgrade,
  partialUpgrade,
  recentAccesses,
  referenceStep,
  RESULT,
  SPEC,
  syncError,
  T0,
  upgradeError,
  type ConnectionSnapshot,
} from './connection.fixtures.js';

// ---------------------------------------------------------------------------------------------------------------
// Static transition inventory
// ---------------------------------------------------------------------------------------------------------------

interface TransitionInfo {
  key: string;
  source: string;
  eventType: string;
  branch: number;
  guard: string;
  target: string;
}

type TransitionDef = ReturnType<AnyStateMachine['getTransitionData']>[number];

const realMachine = connectionMachine as unknown as AnyStateMachine;

function guardName(def: TransitionDef): string {
  const g = def.guard as unknown;
  if (!g) return '-';
  if (typeof g === 'string') return g;
  if (typeof g === 'function') {
    // not('x'), and([...]), or([...]) are functions named after the combinator, carrying their operands
    const ops = (g as { guards?: unknown[] }).guards;
    return ops ? `${g.name}(${ops.map((x) => (typeof x === 'string' ? x : '?')).join(',')})` : 'inline';
  }
  if (typeof g === 'object' && 'type' in g) return String((g as { type: unknown }).type);
  return 'inline';
}

/** Walks the state nodes from `machine.root` down; returns every branch of every transition. */
function allTransitions(machine: AnyStateMachine): TransitionInfo[] {
  const nodes: AnyStateNode[] = [];
  const walk = (node: AnyStateNode) => {
    nodes.push(node);
    for (const child of Object.values(node.states) as AnyStateNode[]) walk(child);
  };
  walk(machine.root);
  const out: TransitionInfo[] = [];
  for (const node of nodes) {
    const lists: Array<[string, TransitionDef[]]> = [...node.transitions.entries()];
    if (node.always?.length) lists.push(['(always)', node.always]);
    for (const [eventType, defs] of lists) {
      defs.forEach((def, branch) => {
        out.push({
          key: `${node.id} | ${eventType} | #${branch}`,
          source: node.id,
          eventType,
          branch,
          guard: guardName(def),
          target: def.target?.map((t) => t.id).join('+') ?? '(none)',
        });
      });
    }
  }
  return out;
}

/** Keys of the transitions the machine takes from `snapshot` on `event` (empty when it ignores the event). */
function taken(snapshot: ConnectionSnapshot, event: ConnectionEvent): string[] {
  return realMachine.getTransitionData(snapshot as never, event).map((def) => {
    const branches = def.source.transitions.get(def.eventType) ?? [];
    const index = branches.indexOf(def);
    if (index < 0) throw new Error(`transition not found on its source: ${def.source.id} ${def.eventType}`);
    return `${def.source.id} | ${def.eventType} | #${index}`;
  });
}

const TRANSITIONS = allTransitions(realMachine);

// ---------------------------------------------------------------------------------------------------------------
// The model: the machine stepped together with a clock, driven by symbolic events
// ---------------------------------------------------------------------------------------------------------------

/**
 * When an event happens, relative to the model's clock: `now` (the instant of the previous event), the last ms
 * before / the ms at which the oldest of 4 recent unattended accesses leaves the 24 h window, the last ms of the
 * consent / the ms it is 90 days old. Events are resolved to concrete ones against the current world, in the
 * traversal and again, independently, against the live actor in the replay.
 */
type When = 'now' | 'window-1' | 'window' | 'consent-1' | 'consent' | 'cooldown-1' | 'cooldown';
type Outcome = (typeof OUTCOMES)[number]['name'];

type ModelEvent =
  | { type: 'SYNC.REQUEST'; unattended: boolean; when: When }
  | { type: 'SYNC.FINISHED'; of: 'active' | 'stale'; outcome: Outcome }
  | { type: 'SETTINGS.UPDATE'; change: 'storedCredentials' | 'hasWebScraping' | 'consent' | 'renewConsent' }
  | { type: 'CONSENT.WARNED' }
  | { type: 'RECREATED' };

interface World {
  snap: ConnectionSnapshot;
  /** The latest `at` sent: no event of a path is earlier. */
  now: number;
  /** Number of sync requests sent, for fresh syncIds. */
  seq: number;
  /** What the last event did: the transitions taken, or why it was refused/ignored. */
  last: string;
}

const MODEL_INPUT: ConnectionInput = { ...ELIGIBLE, consentGrantedAt: T0 };

/** Every shape a sync can end with. */
const OUTCOMES = [
  { name: 'ok', status: 'COMPLETED', error: null },
  { name: 'cancelled', status: 'FAILED', error: syncError('CANCELLED') },
  { name: 'preflight-user', status: 'FAILED', error: syncError('PREFLIGHT_REFUSED') },
  { name: 'preflight', status: 'FAILED', error: syncError('PREFLIGHT_REFUSED', { userActionRequired: false }) },
  { name: 'provider-disabled', status: 'FAILED', error: syncError('CONNECTION_DISABLED') },
  { name: 'unavailable', status: 'FAILED', error: syncError('PROVIDER_UNAVAILABLE') },
  { name: 'no-error', status: 'FAILED', error: null },
  { name: 'credentials', status: 'FAILED', error: syncError('INVALID_CREDENTIALS') },
  { name: 'sca', status: 'FAILED', error: syncError('SCA_FAILED') },
  { name: 'challenge-expired', status: 'FAILED', error: syncError('CHALLENGE_EXPIRED') },
  { name: 'consent-expired', status: 'FAILED', error: syncError('CONSENT_EXPIRED') },
  { name: 'bank-rejected', status: 'FAILED', error: syncError('BANK_REJECTED') },
  // xs2a publishes its counter and disables at 3: banksync stops at 2
  { name: 'xs2a-counter-2', status: 'FAILED', error: syncError('BANK_REJECTED', { failureCount: 2 }), policy: { providerFailureLimit: 3 } },
  // a Retry-After longer than the backoff sets the cooldown
  { name: 'rate-limited-1h', status: 'FAILED', error: syncError('RATE_LIMITED', { retryAfterMs: 60 * 60_000 }) },
  { name: '40001', status: 'FAILED', error: upgradeError(directUpgrade(), '40001') },
  { name: '40002', status: 'FAILED', error: upgradeError(multiUpgrade(), '40002') },
  { name: '40003', status: 'FAILED', error: upgradeError(partialUpgrade(), '40003') },
  // every account moves to new accesses: the old access is retired
  { name: '40002-all', status: 'FAILED', error: upgradeError(movedAway(), '40002') },
] as const satisfies ReadonlyArray<{ name: string; status: 'COMPLETED' | 'FAILED'; error: SyncError | null; policy?: { providerFailureLimit?: number } }>;
/** Outcomes that cool the connection down; offered only a few times in a row to keep the graph finite. */
const COOLING: readonly Outcome[] = ['unavailable', 'no-error', 'rate-limited-1h'];

/** Consent age at which the model stops jumping a day ahead (keeps the graph finite; the 90-day edge is jumped to). */
const JUMP_HORIZON_MS = 2 * DAY;

const recentAt = (c: ConnectionContext, now: number) => recentAccesses(c.unattendedAccesses, now);

/** The instant `when` denotes in world `x`, or null when it does not apply there. */
function instant(x: World, when: When): number | null {
  const c = x.snap.context;
  const consentAge = c.consentGrantedAt === null ? null : x.now - c.consentGrantedAt;
  switch (when) {
    case 'now':
      return x.now;
    case 'window-1':
    case 'window': {
      const recent = recentAt(c, x.now);
      if (recent.length < SPEC.unattendedMaxPerWindow) return null;
      const t = Math.min(...recent) + SPEC.unattendedWindowMs - (when === 'window-1' ? 1 : 0);
      // far jumps only while the consent is young, absent or expired: they cannot cross the 90-day edge
      const safe = consentAge === null || consentAge >= SPEC.consentMaxAgeMs || consentAge + (t - x.now) < JUMP_HORIZON_MS;
      return safe && t >= x.now ? t : null;
    }
    case 'consent-1':
    case 'consent': {
      if (c.consentGrantedAt === null) return null;
      const t = c.consentGrantedAt + SPEC.consentMaxAgeMs - (when === 'consent-1' ? 1 : 0);
      return t > x.now ? t : null;
    }
    case 'cooldown-1':
    case 'cooldown': {
      if (c.cooldownUntil === null) return null;
      const t = c.cooldownUntil - (when === 'cooldown-1' ? 1 : 0);
      const safe = consentAge === null || consentAge >= SPEC.consentMaxAgeMs || consentAge + (t - x.now) < JUMP_HORIZON_MS;
      return safe && t > x.now ? t : null;
    }
  }
}

/** The concrete event `e` denotes in world `x` (null: not applicable there). */
function concretize(e: ModelEvent, x: World): ConnectionEvent | null {
  const c = x.snap.context;
  switch (e.type) {
    case 'SYNC.REQUEST': {
      const at = instant(x, e.when);
      return at === null ? null : { type: 'SYNC.REQUEST', syncId: `sync-${x.seq + 1}`, unattended: e.unattended, at };
    }
    case 'SYNC.FINISHED': {
      const o = OUTCOMES.find((y) => y.name === e.outcome)!;
      const syncId = e.of === 'active' ? c.activeSyncId : `sync-${x.seq}-stale`;
      if (syncId === null) return null;
      const policy = 'policy' in o ? o.policy : {};
      return { type: 'SYNC.FINISHED', syncId, status: o.status, result: o.status === 'COMPLETED' ? RESULT : null, error: o.error, at: x.now, ...policy };
    }
    case 'SETTINGS.UPDATE':
      switch (e.change) {
        case 'renewConsent':
          return c.consentGrantedAt === null ? null : { type: 'SETTINGS.UPDATE', consentGrantedAt: x.now, at: x.now };
        case 'consent':
          return { type: 'SETTINGS.UPDATE', consentGrantedAt: c.consentGrantedAt === null ? x.now : null, at: x.now };
        default:
          return { type: 'SETTINGS.UPDATE', [e.change]: !c[e.change], at: x.now };
      }
    case 'CONSENT.WARNED':
      return { type: 'CONSENT.WARNED', at: x.now };
    case 'RECREATED':
      return { type: 'RECREATED', at: x.now };
  }
}

/** What `event` does in `snap`: the transitions taken, or why it is refused / ignored. */
function outcomeOf(snap: ConnectionSnapshot, event: ConnectionEvent): string {
  const keys = taken(snap, event);
  if (keys.length) return keys.join(' & ');
  if (event.type === 'SYNC.REQUEST') return `refused ${refusalReason(snap.value as ConnectionState, snap.context, event.unattended, event.at) ?? '(none!)'}`;
  return `ignored ${event.type}`;
}

function advance(x: World, e: ModelEvent): World {
  const event = concretize(e, x);
  if (!event) throw new Error(`event ${JSON.stringify(e)} does not apply in ${abstractState(x)}`);
  return {
    snap: getNextSnapshot(connectionMachine, x.snap, event),
    now: Math.max(x.now, event.at),
    seq: x.seq + (event.type === 'SYNC.REQUEST' ? 1 : 0),
    last: outcomeOf(x.snap, event),
  };
}

const world = fromTransition<World, ModelEvent, never, ConnectionInput>(advance, ({ input }) => ({
  snap: getInitialSnapshot(connectionMachine, input),
  now: T0,
  seq: 0,
  last: 'init',
}));
type WorldSnapshot = SnapshotFrom<typeof world>;
type Path = StatePath<WorldSnapshot, ModelEvent>;

const w = (s: WorldSnapshot): World => s.context;
const stateOf = (s: WorldSnapshot): ConnectionState => w(s).snap.value as ConnectionState;

/**
 * Everything the machine's future depends on, exactly, with times relative to the clock: state, failure count,
 * whether the user is needed, settings, consent age and the ages of the recent unattended accesses.
 * (Exact, so that a path's symbolic events replay to the same abstract states from any representative.)
 */
function abstractState(x: World): string {
  const c = x.snap.context;
  const age = c.consentGrantedAt === null ? 'none' : x.now - c.consentGrantedAt >= SPEC.consentMaxAgeMs ? 'expired' : x.now - c.consentGrantedAt;
  return JSON.stringify([
    x.snap.value,
    // Beyond the stop more counted failures behave alike (each one stops again).
    Math.min(c.consecutiveFailures, SPEC.breakerThreshold),
    c.needsUser !== null,
    Math.min(c.transientFailures, 1),
    c.cooldownUntil === null || c.cooldownUntil <= x.now ? 'free' : c.cooldownUntil - x.now,
    // Only the first sync of a path may end in a cooldown (see eventsFor): its jitter is then always the same.
    x.seq === 0,
    c.activeSyncId === 'sync-1',
    c.storedCredentials,
    c.hasWebScraping,
    age,
    recentAt(c, x.now).map((t) => x.now - t).sort((a, b) => a - b),
  ]);
}

const serializeVertex = (s: WorldSnapshot): string => abstractState(w(s));

const NOW_REQUESTS: ModelEvent[] = [
  { type: 'SYNC.REQUEST', unattended: false, when: 'now' },
  { type: 'SYNC.REQUEST', unattended: true, when: 'now' },
];
const JUMPS: ModelEvent[] = (['window-1', 'window', 'consent-1', 'consent'] as const).map((when) => ({ type: 'SYNC.REQUEST', unattended: true, when }));
const FINISHES: ModelEvent[] = OUTCOMES.map((o) => ({ type: 'SYNC.FINISHED', of: 'active', outcome: o.name }));
const ALWAYS: ModelEvent[] = [
  { type: 'SYNC.FINISHED', of: 'stale', outcome: 'credentials' },
  { type: 'SETTINGS.UPDATE', change: 'renewConsent' },
  { type: 'CONSENT.WARNED' },
  { type: 'RECREATED' },
];
/** Each makes the connection ineligible for autosync; applied again it restores eligibility. */
const DEVIATIONS: ModelEvent[] = [
  { type: 'SETTINGS.UPDATE', change: 'storedCredentials' },
  { type: 'SETTINGS.UPDATE', change: 'hasWebScraping' },
  { type: 'SETTINGS.UPDATE', change: 'consent' },
];

/** Events the model must not send while the machine has a known bug (see connection.test.ts, known bugs). */
function avoidsKnownBug(x: World, e: ModelEvent): boolean {
  if (!KNOWN_BUGS.errorlessFailureCrashesAtBreaker) return true;
  const crashes = e.type === 'SYNC.FINISHED' && e.of === 'active' && e.outcome === 'no-error' && x.snap.context.consecutiveFailures + 1 >= SPEC.breakerThreshold;
  return !crashes;
}

/**
 * The events offered in a model state. To keep the graph small (but exact) the model explores ineligible
 * settings and time jumps from a clean IDLE only: a settings deviation is made there and, while it lasts, only
 * sync requests and undoing it are offered; a jump in time is made only from a clean IDLE.
 */
function eventsFor(s: WorldSnapshot): ModelEvent[] {
  const x = w(s);
  const c = x.snap.context;
  const settingsOk = c.storedCredentials && !c.hasWebScraping && c.consentGrantedAt !== null;
  const cooling = c.cooldownUntil !== null && c.cooldownUntil > x.now;
  const clean = x.snap.value === 'IDLE' && c.consecutiveFailures === 0 && c.needsUser === null && !cooling;
  // One passing failure shows the cooldown (the doubling is unit-tested), and only for a path's first sync:
  // each sync id jitters the cooldown differently, so later ones would only add vertices without end.
  const finishes = c.transientFailures >= 1 || c.activeSyncId !== 'sync-1' ? FINISHES.filter((e) => e.type === 'SYNC.FINISHED' && !COOLING.includes(e.outcome)) : FINISHES;
  let offered: ModelEvent[];
  if (!settingsOk) {
    const undo = DEVIATIONS.filter((e) => e.type === 'SETTINGS.UPDATE' && (e.change === 'consent' ? c.consentGrantedAt === null : e.change === 'storedCredentials' ? !c.storedCredentials : c.hasWebScraping));
    offered = [...NOW_REQUESTS, ...undo, ...(x.snap.value === 'SYNCING' ? FINISHES.slice(0, 1) : [])];
  } else {
    offered = [
      ...NOW_REQUESTS,
      ...finishes,
      ...ALWAYS,
      // No jumps to the cooldown's edge: every jittered length would start a new copy of the graph at new
      // ages. That edge is unit-tested (connection.test.ts, "cooldown after passing trouble").
      ...(clean ? JUMPS : []),
      ...(clean && recentAt(c, x.now).length === 0 ? DEVIATIONS : []),
    ];
  }
  return offered.filter((e) => concretize(e, x) !== null && avoidsKnownBug(x, e));
}

/**
 * Path generation runs at collection time; a failure there (a machine whose counters grow without bound makes
 * the graph infinite and the traversal limit is hit) is reported by the first test rather than crash the file.
 */
const GRAPH_ERRORS: string[] = [];
function generate<T>(what: string, fn: () => T[]): T[] {
  try {
    return fn();
  } catch (error) {
    GRAPH_ERRORS.push(`${what}: ${(error as Error).message}`);
    return [];
  }
}

/** A shortest path to every abstract state (about 2 600; the limit counts traversal steps). */
const SHORTEST: Path[] = generate('shortest paths', () =>
  getShortestPaths(world, {
    input: MODEL_INPUT,
    events: eventsFor,
    serializeState: serializeVertex,
    limit: 100_000,
  }),
);

/** Transition keys and `refused <reason>` outcomes the paths take. */
function outcomesOf(paths: Path[]): Set<string> {
  const out = new Set<string>();
  for (const p of paths) {
    for (const last of stepOutcomes(p)) {
      if (last.startsWith('refused ')) out.add(last);
      else if (!last.startsWith('ignored ')) last.split(' & ').forEach((k) => out.add(k));
    }
  }
  return out;
}

/**
 * What each step of `path` does in the model. (A path's step states are representatives of abstract states; the
 * abstraction is exact, so any representative gives the same outcome; `replay` checks that too.)
 */
const outcomeCache = new WeakMap<Path, string[]>();
function stepOutcomes(path: Path): string[] {
  let out = outcomeCache.get(path);
  if (!out) {
    out = path.steps.slice(1).map((s, i) => advance(w(path.steps[i]!.state), s.event).last);
    outcomeCache.set(path, out);
  }
  return out;
}

/** What each event offered at the end of each shortest path does: every edge of the model's graph. */
interface Edge {
  path: Path;
  event: ModelEvent;
  from: World;
  to: World;
}
const EDGES: Edge[] = generate('edges', () =>
  SHORTEST.flatMap((path): Edge[] => eventsFor(path.state).map((event) => ({ path, event, from: w(path.state), to: advance(w(path.state), event) }))),
);

/** `path` followed by one more event. */
function extend(path: Path, event: ModelEvent, to: World): Path {
  const state = { ...path.state, context: to } as WorldSnapshot;
  return { ...path, state, steps: [...path.steps, { state, event }], weight: path.weight + 1 };
}

/**
 * The shortest paths end in every abstract state but do not take every edge: for each transition (and refusal
 * reason) that no shortest path takes, the shortest path to a state where it is enabled, extended by it.
 */
function extensionsFor(covered: Set<string>): Path[] {
  const out: Path[] = [];
  const byLength = [...EDGES].sort((a, b) => a.path.steps.length - b.path.steps.length);
  for (const edge of byLength) {
    const what = edge.to.last;
    const keys = what.startsWith('refused ') ? [what] : what.startsWith('ignored ') ? [] : what.split(' & ');
    if (keys.length && keys.some((k) => !covered.has(k))) {
      keys.forEach((k) => covered.add(k));
      out.push(extend(edge.path, edge.event, edge.to));
    }
  }
  return out;
}
const EXTENSIONS = extensionsFor(outcomesOf(SHORTEST));
const PATHS: Path[] = [...SHORTEST, ...EXTENSIONS];

/**
 * All loop-free ways into DISABLED over (state, failure count, user stop) with attended syncs and a few outcomes:
 * the breaker and the provider's CONNECTION_DISABLED from every angle, via NEEDS_USER or not.
 */
const BREAKER_ALPHABET: ModelEvent[] = [
  { type: 'SYNC.REQUEST', unattended: false, when: 'now' },
  // Passing failures (cooldowns) are left to the shortest paths: here they would only multiply the paths.
  ...(['ok', 'cancelled', 'preflight-user', 'credentials', 'xs2a-counter-2', '40002', 'provider-disabled'] as const).map(
    (outcome): ModelEvent => ({ type: 'SYNC.FINISHED', of: 'active', outcome }),
  ),
];
const SIMPLE_TO_DISABLED: Path[] = generate('simple paths', () =>
  getSimplePaths(world, {
    input: MODEL_INPUT,
    events: (s: WorldSnapshot) => BREAKER_ALPHABET.filter((e) => concretize(e, w(s)) !== null && avoidsKnownBug(w(s), e)),
    serializeState: (s: WorldSnapshot) => {
      const c = w(s).snap.context;
      // (with the sync-id part of the abstract state, so that each step's representative replays exactly)
      return JSON.stringify([w(s).snap.value, c.consecutiveFailures, c.needsUser !== null, c.needsUser?.reason === 'FAILURE_LIMIT', w(s).seq === 0, c.activeSyncId === 'sync-1']);
    },
    toState: (s: WorldSnapshot) => stateOf(s) === 'DISABLED' || w(s).snap.context.needsUser?.reason === 'FAILURE_LIMIT',
    limit: 10_000,
  }),
);

// ---------------------------------------------------------------------------------------------------------------
// Live replay
// ---------------------------------------------------------------------------------------------------------------

interface Replayed {
  transitions: string[];
  refusals: RefusalReason[];
  /** Unattended requests in IDLE at the consent / 24 h window boundaries, and what became of them. */
  boundaries: string[];
}

/** Describes an unattended request in IDLE by its distance to the consent and window boundaries. */
function boundariesOf(before: ConnectionSnapshot, event: ConnectionEvent, after: ConnectionSnapshot): string[] {
  if (event.type !== 'SYNC.REQUEST' || !event.unattended || before.value !== 'IDLE') return [];
  const c = before.context;
  const result = after.value === 'SYNCING' ? 'started' : (refusalReason('IDLE', c, true, event.at) ?? '?');
  const out: string[] = [];
  if (c.consentGrantedAt !== null) out.push(`consent age ${event.at - c.consentGrantedAt}: ${result}`);
  const lastDay = c.unattendedAccesses.filter((t) => event.at - t <= SPEC.unattendedWindowMs);
  if (lastDay.length >= SPEC.unattendedMaxPerWindow) out.push(`oldest of 4 accesses ${event.at - Math.min(...lastDay)} ms old: ${result}`);
  if (c.cooldownUntil !== null && Math.abs(event.at - c.cooldownUntil) <= 1) out.push(`cooldown ${event.at - c.cooldownUntil} ms: ${result}`);
  return out;
}

/**
 * Replays `path` on a live actor of the real machine: each symbolic event is resolved against the LIVE actor's
 * snapshot and clock, then sent. At each step the live actor must do what the model did (same transition or
 * refusal), land in the model's abstract state, and agree with the reference rules and `refusalReason`.
 */
function replay(path: Path): Replayed {
  const actor = createActor(connectionMachine, { input: MODEL_INPUT });
  const errors: unknown[] = [];
  actor.subscribe({ error: (e) => errors.push(e) });
  actor.start();
  const out: Replayed = { transitions: [], refusals: [], boundaries: [] };
  const [first, ...rest] = path.steps;
  expect(first?.event.type).toBe('xstate.init');
  let live: World = { snap: actor.getSnapshot(), now: T0, seq: 0, last: 'init' };
  expect(abstractState(live), 'initial state').toBe(abstractState(w(first!.state)));
  /** `expect(actual).toEqual(expected)`, with the cheap comparison first (tens of thousands of steps). */
  const same = (actual: unknown, expected: unknown, where: string) => {
    if (!isDeepStrictEqual(actual, expected)) expect(actual, where).toEqual(expected);
  };
  for (const [i, { event: symbolic, state: model }] of rest.entries()) {
    // the model's step, from the path's own representative of the previous state
    const modelStep = advance(w(path.steps[i]!.state), symbolic);
    same(abstractState(modelStep), abstractState(w(model)), `step ${i + 1}: the abstraction is exact`);
    const event = concretize(symbolic, live);
    const where = () => `step ${i + 1}: ${JSON.stringify(symbolic)} = ${event ? label(event) : '(not applicable live)'}`;
    if (event === null) expect.fail(`${where()}: does not apply to the live actor`);
    if (event.at < live.now) expect.fail(`${where()}: time runs backwards`);
    const before = actor.getSnapshot();
    const stateBefore = before.value as ConnectionState;
    const liveKeys = taken(before, event);
    const what = outcomeOf(before, event);
    same(what, modelStep.last, `${where()}: the live actor does what the model did`);
    const refusal = event.type === 'SYNC.REQUEST' ? refusalReason(stateBefore, before.context, event.unattended, event.at) : null;
    const expected = referenceStep(stateBefore, before.context, event);

    actor.send(event);
    const after = actor.getSnapshot();
    same(errors, [], where());
    same(after.status, 'active', where());
    live = { snap: after, now: Math.max(live.now, event.at), seq: live.seq + (event.type === 'SYNC.REQUEST' ? 1 : 0), last: what };
    // the live actor is where the model says ...
    same(after.value, w(model).snap.value, `${where()}: model state`);
    same(abstractState(live), abstractState(w(model)), `${where()}: model abstract state`);
    // ... which is where the rules say, context and all
    same(after.value, expected.state, `${where()}: reference state`);
    same(after.context, expected.ctx, `${where()}: reference context`);
    same(after.context.activeSyncId !== null, after.value === 'SYNCING', `${where()}: lock iff SYNCING`);
    if (event.type === 'SYNC.REQUEST') {
      const started = after.value === 'SYNCING' && stateBefore !== 'SYNCING';
      same(refusal === null, started, `${where()}: refusalReason agrees with the machine (${refusal})`);
      if (refusal) out.refusals.push(refusal);
    }
    out.transitions.push(...liveKeys);
    out.boundaries.push(...boundariesOf(before, event, after));
  }
  actor.stop();
  return out;
}

function label(e: ConnectionEvent): string {
  const t = `+${e.at - T0}ms`;
  switch (e.type) {
    case 'SYNC.REQUEST':
      return `${e.unattended ? 'auto' : 'user'}(${e.syncId})@${t}`;
    case 'SYNC.FINISHED':
      return `${e.status === 'COMPLETED' ? 'ok' : (e.error?.providerCode ?? e.error?.code ?? 'no-error')}(${e.syncId})@${t}`;
    case 'SETTINGS.UPDATE': {
      const { type: _t, at: _a, ...rest } = e;
      return `settings${JSON.stringify(rest)}@${t}`;
    }
    case 'CONSENT.WARNED':
      return `consent-warned@${t}`;
    case 'RECREATED':
      return `recreated@${t}`;
  }
}
function symbolicLabel(e: ModelEvent): string {
  switch (e.type) {
    case 'SYNC.REQUEST':
      return `${e.unattended ? 'auto' : 'user'}${e.when === 'now' ? '' : `@${e.when}`}`;
    case 'SYNC.FINISHED':
      return `${e.of === 'stale' ? 'stale:' : ''}${e.outcome}`;
    case 'SETTINGS.UPDATE':
      return `settings:${e.change}`;
    case 'CONSENT.WARNED':
      return 'consent-warned';
    case 'RECREATED':
      return 'recreated';
  }
}
const summary = (p: Path) =>
  p.steps
    .slice(1)
    .map((s) => symbolicLabel(s.event))
    .join(' > ') || '(initial)';

function coveredBy(paths: Path[]): { transitions: Set<string>; refusals: Set<string> } {
  const transitions = new Set<string>();
  const refusals = new Set<string>();
  for (const p of paths) {
    for (const last of stepOutcomes(p)) {
      if (last.startsWith('refused ')) refusals.add(last.slice('refused '.length));
      else if (!last.startsWith('ignored ')) last.split(' & ').forEach((k) => transitions.add(k));
    }
  }
  return { transitions, refusals };
}

const ALL_REFUSALS: RefusalReason[] = [
  'SYNC_ACTIVE',
  'CONNECTION_DISABLED',
  'CONNECTION_RETIRED',
  'USER_REQUIRED',
  'NO_STORED_CREDENTIALS',
  'CONSENT_EXPIRED',
  'WEB_SCRAPING_INTERFACE',
  'COOLING_DOWN',
  'UNATTENDED_LIMIT',
];

// ---------------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------------

describe('connection machine model (xstate/graph)', () => {
  it('the model graph is finite and its paths generate', () => {
    expect(GRAPH_ERRORS).toEqual([]);
    expect(SHORTEST.length).toBeGreaterThan(1_000);
  });

  it('the static inventory sees every state node and every guarded branch, root-level `on` included', () => {
    const viaGraph = [realMachine.root, ...getStateNodes(realMachine.root)].map((n: AnyStateNode) => n.id).sort();
    expect(viaGraph).toEqual(['connection', 'connection.DISABLED', 'connection.IDLE', 'connection.NEEDS_USER', 'connection.RETIRED', 'connection.SYNCING']);
    expect([...new Set(TRANSITIONS.map((t) => t.source))].every((id) => viaGraph.includes(id))).toBe(true);
    const lines = TRANSITIONS.map((t) => `${t.key} -> ${t.target} [${t.guard}]`);
    expect(lines).toContain('connection | SETTINGS.UPDATE | #0 -> (none) [-]');
    expect(lines).toContain('connection.DISABLED | RECREATED | #0 -> connection.IDLE [-]');
    // the report of the active sync: stale reports first, the catch-all (transient failure) last
    const finished = TRANSITIONS.filter((t) => t.source === 'connection.SYNCING' && t.eventType === 'SYNC.FINISHED');
    expect(finished[0]).toMatchObject({ guard: 'not(isActiveSync)', target: '(none)' });
    expect(finished[finished.length - 1]).toMatchObject({ guard: '-', target: 'connection.IDLE' });
    for (const guard of ['succeeded', 'cancelled', 'providerDisabled', 'reachesFailureLimit', 'accessUpgraded', 'userMustAct']) {
      expect(finished.map((t) => t.guard)).toContain(guard);
    }
    expect(TRANSITIONS.filter((t) => t.source === 'connection.IDLE' && t.eventType === 'SYNC.REQUEST')).toHaveLength(2);
    // every state can be entered, and DISABLED is left only by RECREATED
    const targets = new Set(TRANSITIONS.map((t) => t.target));
    for (const s of ['IDLE', 'SYNCING', 'NEEDS_USER', 'DISABLED', 'RETIRED']) expect(targets.has(`connection.${s}`), s).toBe(true);
    expect(TRANSITIONS.filter((t) => t.source === 'connection.DISABLED').map((t) => t.eventType)).toEqual(['RECREATED']);
    // RETIRED is never left
    expect(TRANSITIONS.filter((t) => t.source === 'connection.RETIRED')).toEqual([]);
  });

  it('the generated shortest paths cover every transition and every refusal reason', () => {
    const { transitions, refusals } = coveredBy(PATHS);
    const missing = TRANSITIONS.filter((t) => !transitions.has(t.key)).map((t) => `${t.key} -> ${t.target} [${t.guard}]`);
    console.log(`connection: covered ${TRANSITIONS.length - missing.length}/${TRANSITIONS.length} transitions, ${PATHS.length} paths`);
    console.log(`connection: ${SHORTEST.length} shortest paths (one per abstract state) + ${EXTENSIONS.length} one-edge extensions; graph has ${EDGES.length} edges`);
    expect(missing).toEqual([]);
    const known = new Set(TRANSITIONS.map((t) => t.key));
    expect([...transitions].filter((k) => !known.has(k))).toEqual([]);
    expect(ALL_REFUSALS.filter((r) => !refusals.has(r))).toEqual([]);
    expect(refusals.has('(none!)')).toBe(false);
  });

  it('every edge of the model graph agrees with the reference rules and refusalReason', () => {
    for (const { from, event, to } of EDGES) {
      const e = concretize(event, from)!;
      const where = `${abstractState(from)} --${symbolicLabel(event)}--> ${to.last}`;
      const before = from.snap.value as ConnectionState;
      const expected = referenceStep(before, from.snap.context, e);
      expect(to.snap.value, where).toBe(expected.state);
      expect(to.snap.context, where).toEqual(expected.ctx);
      if (e.type === 'SYNC.REQUEST') {
        const started = before !== 'SYNCING' && to.snap.value === 'SYNCING';
        expect(refusalReason(before, from.snap.context, e.unattended, e.at) === null, where).toBe(started);
      }
    }
    expect(EDGES.length).toBeGreaterThan(1_000);
  });

  const replayed: Replayed[] = [];

  it('every shortest path replays on a live actor, step by step', async () => {
    const live = new Set<string>();
    const refusals = new Set<string>();
    let steps = 0;
    for (const [i, path] of PATHS.entries()) {
      // Let the test runner's worker answer its RPCs during this long synchronous loop.
      if (i % 500 === 0) await new Promise((resolve) => setImmediate(resolve));
      try {
        const r = replay(path);
        replayed.push(r);
        r.transitions.forEach((k) => live.add(k));
        r.refusals.forEach((k) => refusals.add(k));
        steps += path.steps.length - 1;
      } catch (error) {
        throw new Error(`path #${i} ${summary(path)}\n${(error as Error).message}`);
      }
    }
    const missing = TRANSITIONS.filter((t) => !live.has(t.key)).map((t) => t.key);
    console.log(`connection: live replay of ${PATHS.length} paths (${steps} steps) took ${TRANSITIONS.length - missing.length}/${TRANSITIONS.length} transitions`);
    expect(missing).toEqual([]);
    expect(ALL_REFUSALS.filter((r) => !refusals.has(r))).toEqual([]);
  });

  it('the replayed paths hit the windows: consent last ms / first expired ms, 4-access limit 1 ms before / at 24 h', () => {
    expect(replayed.length).toBe(PATHS.length);
    const seen = new Set(replayed.flatMap((r) => r.boundaries));
    expect(seen).toContain(`consent age ${SPEC.consentMaxAgeMs - 1}: started`);
    expect(seen).toContain(`consent age ${SPEC.consentMaxAgeMs}: CONSENT_EXPIRED`);
    expect(seen).toContain(`oldest of 4 accesses ${SPEC.unattendedWindowMs - 1} ms old: UNATTENDED_LIMIT`);
    expect(seen).toContain(`oldest of 4 accesses ${SPEC.unattendedWindowMs} ms old: started`);
  });

  it('simple paths into a stop (the breaker from every angle) replay on a live actor', () => {
    console.log(`connection: ${SIMPLE_TO_DISABLED.length} simple paths to a stop`);
    expect(SIMPLE_TO_DISABLED.length).toBeGreaterThanOrEqual(10);
    let viaProvider = 0;
    let viaBreaker = 0;
    let viaProviderCounter = 0;
    for (const [i, path] of SIMPLE_TO_DISABLED.entries()) {
      try {
        replay(path);
      } catch (error) {
        throw new Error(`simple path #${i} ${summary(path)}\n${(error as Error).message}`);
      }
      const ctx = w(path.state).snap.context;
      if (stateOf(path.state) === 'DISABLED') {
        // Only the provider disables (issue #13): never banksync's own count.
        expect(ctx.lastSync?.errorCode).toBe('CONNECTION_DISABLED');
        viaProvider++;
        continue;
      }
      expect(stateOf(path.state)).toBe('NEEDS_USER');
      expect(ctx.needsUser?.reason).toBe('FAILURE_LIMIT');
      // Only counted failures get there: never outages, busy answers or errorless failures.
      expect(['INVALID_CREDENTIALS', 'SCA_FAILED', 'BANK_REJECTED']).toContain(ctx.lastSync?.errorCode);
      if (ctx.consecutiveFailures === 2) viaProviderCounter++;
      else {
        expect(ctx.consecutiveFailures).toBe(SPEC.breakerThreshold);
        viaBreaker++;
      }
    }
    expect({ viaProvider: viaProvider > 0, viaBreaker: viaBreaker > 0, viaProviderCounter: viaProviderCounter > 0 }).toEqual({
      viaProvider: true,
      viaBreaker: true,
      viaProviderCounter: true,
    });
  });

});
