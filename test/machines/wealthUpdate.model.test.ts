/**
 * Model-based tests for the wealthAPI background update machine with `xstate/graph`.
 *
 * The transition inventory (every guarded branch of every `on`) is computed statically and its size asserted;
 * shortest paths over an abstraction of the snapshot (plus the transition that led there) must cover it; every
 * path is replayed on a live actor, which must select the model's transition and reach its state at each step.
 */
import { describe, expect, it } from 'vitest';
import { createActor, type AnyEventObject, type AnyStateMachine, type AnyStateNode, type SnapshotFrom } from 'xstate';
import { createTestModel, getStateNodes, type StatePath } from 'xstate/graph';
import {
  WEALTH_CONSENT_MAX_AGE_DAYS,
  preflightReasons,
  wealthPreflight,
  wealthProcessReading,
  wealthUpdateMachine,
  type WealthPreflightFacts,
  type WealthUpdateEvent,
  type WealthUpdateSnapshot,
} from '../../machines/wealthUpdate.js';

const NAME = 'wealthUpdate';
const machine = wealthUpdateMachine as unknown as AnyStateMachine;
type Snap = SnapshotFrom<AnyStateMachine>;
type TransitionDef = ReturnType<AnyStateMachine['getTransitionData']>[number];

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
/** Preflight 6 (refused x3 reasons, consent, busy, ready), Busy 1, Ready 2, Updating 3, Pending 1. */
const EXPECTED_TRANSITIONS = 13;

const NOW = Date.parse('2025-03-01T10:00:00.000Z');
const DAY = 24 * 60 * 60_000;
const OK: WealthPreflightFacts = {
  manualSyncRequired: true,
  bankingInterfaces: ['XS2A', 'FINTS_SERVER'],
  credentialsStored: true,
  lastUpdateAt: NOW - 3 * DAY,
  updateRunning: false,
  now: NOW,
};
const preflight = (facts: Partial<WealthPreflightFacts>): WealthUpdateEvent => ({ type: 'PREFLIGHT', ...OK, ...facts });

const EVENTS: WealthUpdateEvent[] = [
  preflight({}),
  preflight({ manualSyncRequired: false }),
  preflight({ bankingInterfaces: ['XS2A', 'WEB_SCRAPING'] }),
  preflight({ credentialsStored: false }),
  preflight({ lastUpdateAt: NOW - 100 * DAY }),
  preflight({ updateRunning: true }),
  { type: 'RETRY' },
  { type: 'UPDATE.STARTED', processId: 'p-1' },
  { type: 'UPDATE.CONFLICT' },
  { type: 'PROCESS', status: 'PENDING' },
  { type: 'PROCESS', status: 'RUNNING' },
  { type: 'PROCESS', status: 'SUCCESS' },
  { type: 'PROCESS', status: 'FAILED', synchronizationError: { code: 'TWO_FACTOR_REQUIRED', message: '2FA' } },
  { type: 'PROCESS', status: 'FAILED', synchronizationError: { code: 'BANK_UNAVAILABLE', message: 'down' } },
];

function abstractState(snapshot: Snap): string {
  const c = (snapshot as WealthUpdateSnapshot).context;
  return JSON.stringify({ value: snapshot.value, refusal: c.refusal, reasons: c.reasons, status: c.status, error: c.error?.code ?? null, process: c.processId });
}

function serializeVertex(snapshot: Snap, event: AnyEventObject | undefined, previous?: Snap): string {
  const base = abstractState(snapshot);
  if (!event || !previous) return base;
  const via = taken(previous, event);
  return via.length ? `${base} via ${via.join(' & ')}` : base;
}

const model = createTestModel(machine, { events: EVENTS as never, serializeState: serializeVertex as never, limit: 50_000 });
const PATHS = model.getShortestPaths();

function coveredBy(paths: StatePath<Snap, AnyEventObject>[]): Set<string> {
  const covered = new Set<string>();
  for (const path of paths) {
    for (let i = 1; i < path.steps.length; i++) for (const k of taken(path.steps[i - 1]!.state, path.steps[i]!.event)) covered.add(k);
  }
  return covered;
}

const describeEvent = (e: AnyEventObject): string => {
  const event = e as unknown as WealthUpdateEvent;
  if (event.type === 'PROCESS') return `PROCESS(${event.status}${event.synchronizationError ? `:${event.synchronizationError.code}` : ''})`;
  if (event.type === 'PREFLIGHT') return `PREFLIGHT(${preflightReasons(event).join('+') || (event.updateRunning ? 'busy' : 'ok')})`;
  return e.type;
};
const summary = (path: StatePath<Snap, AnyEventObject>) => path.steps.slice(1).map((s) => describeEvent(s.event)).join(' > ') || '(initial)';

function replay(path: StatePath<Snap, AnyEventObject>): string[] {
  const actor = createActor(wealthUpdateMachine).start();
  const liveTaken: string[] = [];
  const [first, ...rest] = path.steps;
  expect(abstractState(actor.getSnapshot() as Snap)).toBe(abstractState(first!.state));
  let previousModel = first!.state;
  let previousProgress = 0;
  for (const [i, step] of rest.entries()) {
    const where = `step ${i + 1}: ${describeEvent(step.event)}`;
    const live = taken(actor.getSnapshot() as Snap, step.event);
    expect(live, `${where}: live actor selects the model's transition`).toEqual(taken(previousModel, step.event));
    actor.send(step.event as WealthUpdateEvent);
    const snapshot = actor.getSnapshot();
    expect(snapshot.value, where).toEqual(step.state.value);
    expect(abstractState(snapshot as Snap), where).toBe(abstractState(step.state));
    expect(snapshot.status, where).toBe(step.state.status);
    const progress = Math.max(0, ...Object.values(snapshot.getMeta()).map((m) => (m as { progress: number }).progress));
    expect(progress, `${where}: progress never goes down`).toBeGreaterThanOrEqual(previousProgress);
    previousProgress = progress;
    liveTaken.push(...live);
    previousModel = step.state;
  }
  actor.stop();
  return liveTaken;
}

describe('wealthAPI background update machine model (xstate/graph)', () => {
  it(`has exactly ${EXPECTED_TRANSITIONS} transitions (computed statically)`, () => {
    expect(TRANSITIONS).toHaveLength(EXPECTED_TRANSITIONS);
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

  it('preflight verdicts: every reason listed, consent alone is CONSENT_EXPIRED, a running update is busy', () => {
    expect(wealthPreflight(OK)).toEqual({ verdict: 'READY' });
    expect(wealthPreflight({ ...OK, updateRunning: true })).toEqual({ verdict: 'BUSY' });
    expect(wealthPreflight({ ...OK, lastUpdateAt: NOW - WEALTH_CONSENT_MAX_AGE_DAYS * DAY })).toEqual({
      verdict: 'REFUSED',
      refusal: 'CONSENT_EXPIRED',
      reasons: ['CONSENT_EXPIRED'],
    });
    expect(wealthPreflight({ ...OK, lastUpdateAt: NOW - (WEALTH_CONSENT_MAX_AGE_DAYS * DAY - 1) })).toEqual({ verdict: 'READY' });
    expect(wealthPreflight({ ...OK, lastUpdateAt: null })).toMatchObject({ refusal: 'CONSENT_EXPIRED' });
    expect(
      wealthPreflight({ ...OK, manualSyncRequired: false, bankingInterfaces: ['WEB_SCRAPER'], credentialsStored: false, lastUpdateAt: null, updateRunning: true }),
    ).toEqual({
      verdict: 'REFUSED',
      refusal: 'PREFLIGHT_REFUSED',
      reasons: ['NO_MANUAL_SYNC_REQUIRED', 'WEB_SCRAPING_INTERFACE', 'CREDENTIALS_NOT_STORED', 'CONSENT_EXPIRED'],
    });
  });

  it('process readings: PENDING/RUNNING are RUNNING with growing ranks; 2FA and credentials need the user', () => {
    expect(wealthProcessReading('p', 'PENDING')).toMatchObject({ canonical: 'RUNNING', progress: 1, needsUser: false });
    expect(wealthProcessReading('p', 'RUNNING')).toMatchObject({ canonical: 'RUNNING', progress: 2 });
    expect(wealthProcessReading('p', 'SUCCESS')).toMatchObject({ canonical: 'COMPLETED', progress: 3 });
    expect(wealthProcessReading('p', 'FAILED', { code: 'TWO_FACTOR_REQUIRED' })).toMatchObject({ canonical: 'FAILED', needsUser: true });
    expect(wealthProcessReading('p', 'FAILED', { code: 'invalid_credentials' })).toMatchObject({ canonical: 'FAILED', needsUser: true });
    expect(wealthProcessReading('p', 'FAILED', { code: 'BANK_UNAVAILABLE' })).toMatchObject({ canonical: 'FAILED', needsUser: false });
    expect(wealthProcessReading('p', 'FAILED')).toMatchObject({ canonical: 'FAILED', needsUser: false });
  });
});
