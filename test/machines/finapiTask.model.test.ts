/**
 * Model-based tests for the finapiTask machine with `xstate/graph`.
 *
 * 1. The set of all transitions of the machine (every guarded branch of every `on`) is computed statically.
 * 2. Shortest paths are generated over an abstraction of the snapshot (state value + what the guards and the
 *    observation read) plus the transition that led there, so every reachable transition ends some path; the
 *    paths must cover every transition.
 * 3. Every path is replayed on a live actor: state value and context must match the model at every step, the
 *    live actor must select the model's transition, and the canonical observation's `progress` rank never
 *    decreases along a path (what lets the canonical machine ignore late callbacks).
 */
import { describe, expect, it } from 'vitest';
import { createActor, type AnyEventObject, type AnyStateMachine, type AnyStateNode, type SnapshotFrom } from 'xstate';
import { createTestModel, getStateNodes, type StatePath } from 'xstate/graph';
import {
  FINAPI_PROGRESS,
  finapiObservation,
  finapiProgress,
  finapiStateName,
  finapiTaskMachine,
  type FinapiTaskEvent,
  type FinapiTaskSnapshot,
  type FinapiWebFormStatus,
} from '../../machines/finapiTask.js';

type TransitionDef = ReturnType<AnyStateMachine['getTransitionData']>[number];
type Snap = SnapshotFrom<AnyStateMachine>;

const machine = finapiTaskMachine as unknown as AnyStateMachine;

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
  if (typeof g === 'object' && g !== null && 'type' in g) {
    const params = (g as { params?: unknown }).params;
    return `${String((g as { type: unknown }).type)}${params ? JSON.stringify(params) : ''}`;
  }
  return 'inline';
}

/** Every transition: each guarded branch of every `on` (and `always`) of every state node. */
function allTransitions(m: AnyStateMachine): { key: string; label: string }[] {
  const nodes: AnyStateNode[] = [m.root, ...getStateNodes(m.root)];
  const out: { key: string; label: string }[] = [];
  for (const node of nodes) {
    const lists: Array<[string, TransitionDef[]]> = [...node.transitions.entries()];
    if (node.always?.length) lists.push(['', node.always]);
    for (const [eventType, defs] of lists) {
      defs.forEach((def, branch) => {
        const key = `${node.id} | ${eventType || def.eventType} | #${branch}`;
        out.push({ key, label: `${key} -> ${def.target?.map((t) => t.id).join('+') ?? '(none)'} [${describeGuard(def)}]` });
      });
    }
  }
  return out;
}

function taken(snapshot: Snap, event: AnyEventObject): string[] {
  if (event.type === 'xstate.init' || snapshot.status !== 'active') return [];
  return machine.getTransitionData(snapshot, event).map(keyOf);
}

// ---------------------------------------------------------------------------------------------------------------
// The alphabet: every reading the machine can get, from polls and callbacks
// ---------------------------------------------------------------------------------------------------------------

const EXPIRES = '2025-03-01T10:20:00.000Z';
const webForm = (status: FinapiWebFormStatus, id = 'wf-1', expiresAt?: string) => ({
  id,
  url: `https://webform.example/wf/${id}`,
  status,
  ...(expiresAt ? { expiresAt } : {}),
});
const WEB_FORM_STATUSES: FinapiWebFormStatus[] = ['NOT_YET_OPENED', 'IN_PROGRESS', 'COMPLETED', 'COMPLETED_WITH_ERROR', 'EXPIRED', 'ABORTED'];

const EVENTS: FinapiTaskEvent[] = [
  { type: 'TASK.OBSERVED', status: 'NOT_YET_STARTED', webForm: null, errorCode: null },
  { type: 'TASK.OBSERVED', status: 'IN_PROGRESS', webForm: null, errorCode: null },
  { type: 'TASK.OBSERVED', status: 'COMPLETED', webForm: null, errorCode: null },
  { type: 'TASK.OBSERVED', status: 'COMPLETED_WITH_ERROR', webForm: null, errorCode: 'BANK_SERVER_REJECTION' },
  // a finalised callback: no error code
  { type: 'TASK.OBSERVED', status: 'COMPLETED_WITH_ERROR', webForm: null },
  ...WEB_FORM_STATUSES.map((s): FinapiTaskEvent => ({ type: 'TASK.OBSERVED', status: 'WEB_FORM_REQUIRED', webForm: webForm(s), errorCode: null })),
  // another web form than the task's: ignored
  { type: 'TASK.OBSERVED', status: 'WEB_FORM_REQUIRED', webForm: webForm('COMPLETED', 'wf-other'), errorCode: null },
  ...WEB_FORM_STATUSES.map(
    (s): FinapiTaskEvent => ({
      type: 'WEB_FORM.OBSERVED',
      webForm: webForm(s, 'wf-1', EXPIRES),
      errorCode: s === 'COMPLETED_WITH_ERROR' ? 'BANK_SERVER_REJECTION' : null,
    }),
  ),
  { type: 'WEB_FORM.OBSERVED', webForm: webForm('COMPLETED', 'wf-other', EXPIRES), errorCode: null },
  // a web form COMPLETED with an errorCode (the code is the reason of a failure)
  { type: 'WEB_FORM.OBSERVED', webForm: webForm('COMPLETED', 'wf-1', EXPIRES), errorCode: 'NO_ACCOUNTS_FOR_TYPE_LIST' },
  // final tasks carrying their web form (Web Form 2.0), from reads (errorCode null) and callbacks (no errorCode)
  ...(['COMPLETED', 'COMPLETED_WITH_ERROR'] as const).flatMap((status) =>
    WEB_FORM_STATUSES.map((s): FinapiTaskEvent => ({ type: 'TASK.OBSERVED', status, webForm: webForm(s), errorCode: null })),
  ),
  ...WEB_FORM_STATUSES.map((s): FinapiTaskEvent => ({ type: 'TASK.OBSERVED', status: 'COMPLETED', webForm: webForm(s) })),
  // COMPLETED with an errorCode: not a success
  { type: 'TASK.OBSERVED', status: 'COMPLETED', webForm: null, errorCode: 'INTERNAL_ERROR' },
  { type: 'CONNECTION.OBSERVED', updateStatus: 'IN_PROGRESS', categorizationStatus: 'READY' },
  { type: 'CONNECTION.OBSERVED', updateStatus: 'READY', categorizationStatus: 'PENDING' },
  { type: 'CONNECTION.OBSERVED', updateStatus: 'READY', categorizationStatus: 'IN_PROGRESS' },
  { type: 'CONNECTION.OBSERVED', updateStatus: 'READY', categorizationStatus: 'READY' },
  {
    type: 'ACCOUNTS.OBSERVED',
    accounts: [
      { accountId: '1', status: 'DOWNLOAD_IN_PROGRESS', isNew: false },
      { accountId: '2', status: 'UPDATED', isNew: false },
    ],
  },
  {
    type: 'ACCOUNTS.OBSERVED',
    accounts: [
      { accountId: '1', status: 'UPDATED', isNew: false },
      { accountId: '2', status: 'UPDATED', isNew: true },
    ],
  },
  {
    type: 'ACCOUNTS.OBSERVED',
    accounts: [
      { accountId: '1', status: 'DOWNLOAD_FAILED', isNew: false },
      { accountId: '2', status: 'UPDATED_FIXED', isNew: false },
      { accountId: '3', status: 'DEPRECATED', isNew: false },
    ],
  },
];

/** What the guards and the observation read: state, categorization, web form deadline, error code knowledge. */
function abstractState(snapshot: Snap): string {
  const c = (snapshot as FinapiTaskSnapshot).context;
  return JSON.stringify({
    value: snapshot.value,
    categorization: c.categorizationStatus,
    webForm: c.webForm ? `${c.webForm.id}:${c.webForm.status}:${c.webForm.expiresAt ? 'deadline' : 'no-deadline'}` : null,
    error: c.errorSource ? `${c.errorSource}:${c.errorCode}` : null,
    outcome: c.result?.outcome ?? null,
  });
}

/** Vertex = abstract state + the transition that entered it, so that every transition ends a shortest path. */
function serializeVertex(snapshot: Snap, event: AnyEventObject | undefined, previous?: Snap): string {
  const base = abstractState(snapshot);
  if (!event || !previous) return base;
  const via = taken(previous, event);
  return via.length ? `${base} via ${via.join(' & ')}` : base;
}

const TRANSITIONS = allTransitions(machine);
const model = createTestModel(machine, {
  events: EVENTS as never,
  serializeState: serializeVertex as never,
  limit: 100_000,
});
const PATHS: Array<StatePath<Snap, AnyEventObject>> = model.getShortestPaths() as never;

const NOW = Date.parse('2025-03-01T10:00:00.000Z');
const rankOf = (s: Snap) => finapiObservation(s as FinapiTaskSnapshot, { now: NOW }).progress ?? -1;

/** Replays a path on a live actor; returns the transition keys the live actor took. */
function replay(path: StatePath<Snap, AnyEventObject>): string[] {
  const actor = createActor(finapiTaskMachine, { input: {} }).start();
  const liveTaken: string[] = [];
  const [first, ...rest] = path.steps;
  expect(first?.event.type).toBe('xstate.init');
  expect(actor.getSnapshot().value).toEqual(first!.state.value);
  let previousModel = first!.state;
  let rank = rankOf(actor.getSnapshot() as Snap);
  for (const [i, step] of rest.entries()) {
    const where = `step ${i + 1}: ${step.event.type}`;
    const live = actor.getSnapshot() as Snap;
    const liveKeys = taken(live, step.event);
    expect(liveKeys, `${where}: live actor selects the model's transition`).toEqual(taken(previousModel, step.event));
    actor.send(step.event as FinapiTaskEvent);
    const after = actor.getSnapshot();
    expect(after.value, where).toEqual(step.state.value);
    expect(after.context, where).toEqual(step.state.context);
    expect(after.status, where).toBe(step.state.status);
    const next = rankOf(after as Snap);
    expect(next, `${where}: progress never decreases`).toBeGreaterThanOrEqual(rank);
    rank = next;
    liveTaken.push(...liveKeys);
    previousModel = step.state;
  }
  actor.stop();
  return liveTaken;
}

const summary = (path: StatePath<Snap, AnyEventObject>) =>
  path.steps
    .slice(1)
    .map((s) => {
      const e = s.event as FinapiTaskEvent;
      if (e.type === 'TASK.OBSERVED') return `task:${e.status}${e.webForm ? `/${e.webForm.status}` : ''}`;
      if (e.type === 'WEB_FORM.OBSERVED') return `webForm:${e.webForm.status}`;
      if (e.type === 'CONNECTION.OBSERVED') return `conn:${e.updateStatus}/${e.categorizationStatus}`;
      return `accounts:${e.accounts.map((a) => a.status).join(',')}`;
    })
    .join(' > ') || '(initial)';

describe('finapiTask machine model (xstate/graph)', () => {
  it('the generated shortest paths cover every transition of the machine', () => {
    const covered = new Set<string>();
    for (const path of PATHS) {
      for (let i = 1; i < path.steps.length; i++) for (const k of taken(path.steps[i - 1]!.state, path.steps[i]!.event)) covered.add(k);
    }
    const missing = TRANSITIONS.filter((t) => !covered.has(t.key));
    console.log(`finapiTask: covered ${TRANSITIONS.length - missing.length}/${TRANSITIONS.length} transitions, ${PATHS.length} paths`);
    expect(missing.map((t) => t.label)).toEqual([]);
    const known = new Set(TRANSITIONS.map((t) => t.key));
    expect([...covered].filter((k) => !known.has(k))).toEqual([]);
    // sanity: the inventory sees the guarded branches of every reading type
    expect(TRANSITIONS.length).toBeGreaterThanOrEqual(45);
    for (const type of ['TASK.OBSERVED', 'WEB_FORM.OBSERVED', 'CONNECTION.OBSERVED', 'ACCOUNTS.OBSERVED']) {
      expect(TRANSITIONS.some((t) => t.key.includes(`| ${type} |`)), type).toBe(true);
    }
  });

  const liveCovered = new Set<string>();
  describe('shortest paths replayed on a live actor', () => {
    it.each(PATHS.map((p, i) => [i, summary(p), p] as const))('#%i %s', (_i, _name, path) => {
      for (const k of replay(path)) liveCovered.add(k);
    });
  });

  it('the live replays took every transition of the machine', () => {
    const missing = TRANSITIONS.filter((t) => !liveCovered.has(t.key)).map((t) => t.label);
    expect(missing).toEqual([]);
  });

  it('every terminal state is reachable and maps to its canonical reading', () => {
    const finals = new Map<string, Snap>();
    for (const p of PATHS) if (p.state.status === 'done') finals.set(finapiStateName(p.state as FinapiTaskSnapshot), p.state);
    expect([...finals.keys()].sort()).toEqual(['ABORTED', 'COMPLETED_WITH_ERROR', 'DONE', 'EXPIRED', 'INCONSISTENT']);
    const observe = (s: Snap) => finapiObservation(s as FinapiTaskSnapshot, { now: NOW });
    expect(observe(finals.get('INCONSISTENT')!)).toMatchObject({ status: 'FAILED', error: { code: 'PROVIDER_ERROR', retryable: false } });
    expect(observe(finals.get('DONE')!).status).toBe('COMPLETED');
    expect(observe(finals.get('EXPIRED')!)).toMatchObject({ status: 'FAILED', error: { code: 'CHALLENGE_EXPIRED', userActionRequired: true } });
    expect(observe(finals.get('ABORTED')!)).toMatchObject({ status: 'FAILED', error: { code: 'CANCELLED', userActionRequired: true } });
    for (const s of finals.values()) expect(finapiProgress(s as FinapiTaskSnapshot)).toBeGreaterThanOrEqual(FINAPI_PROGRESS.FINALISED);
  });

  it('a COMPLETED_WITH_ERROR known without its code (callback, task payload) is RUNNING (ranked FINALISED) until a read brings it', () => {
    const waiting = PATHS.map((p) => p.state as FinapiTaskSnapshot).filter((s) => s.matches('AWAITING_ERROR_CODE'));
    expect(new Set(waiting.map((s) => s.context.errorSource))).toEqual(new Set(['TASK', 'WEB_FORM']));
    for (const s of waiting) expect(finapiObservation(s, { now: NOW })).toEqual({ status: 'RUNNING', progress: FINAPI_PROGRESS.FINALISED });
    // ... and the reading that explains it ends in COMPLETED_WITH_ERROR with the code
    const explained = PATHS.filter((p) => {
      const before = p.steps.at(-2)?.state as FinapiTaskSnapshot | undefined;
      return before?.matches('AWAITING_ERROR_CODE') && (p.state as FinapiTaskSnapshot).matches('COMPLETED_WITH_ERROR');
    });
    expect(explained.map((p) => (p.state as FinapiTaskSnapshot).context.errorCode)).toContain('BANK_SERVER_REJECTION');
  });

  it('every web form state maps to AWAIT_AUTH with a WEB_FORM challenge and a deadline', () => {
    const waiting = PATHS.map((p) => p.state as FinapiTaskSnapshot).filter((s) => s.matches('WEB_FORM_REQUIRED'));
    expect(waiting.length).toBeGreaterThan(0);
    for (const s of waiting) {
      const o = finapiObservation(s, { now: NOW });
      expect(o.status).toBe('AWAIT_AUTH');
      if (o.status !== 'AWAIT_AUTH') continue;
      expect(o.challenge).toMatchObject({ id: 'wf-1', kind: 'WEB_FORM', redirectUrl: 'https://webform.example/wf/wf-1' });
      // the web form's own deadline when read, else the documented 20 minutes from now
      expect([EXPIRES, new Date(NOW + 20 * 60_000).toISOString()]).toContain(o.challenge.expiresAt);
    }
  });
});
