/**
 * A plain, renderer-neutral model of a machine definition, read from `machine.root` (XState v5 StateNodes):
 * states (initial, final, nested), `on` transitions including guarded branches, `after` delays, invoke
 * onDone/onError, `always`, state onDone, and entry/exit actions. Everything is labelled by NAME (guards,
 * delays, actors, actions), never by implementation. Every renderer (Mermaid, SVG, Stately code) reads this.
 */
import type { AnyStateMachine } from 'xstate';

export type VizStateType = 'atomic' | 'compound' | 'parallel' | 'final' | 'history';

export interface VizInvoke {
  id: string;
  /** The actor's name (the `src` key in `setup({ actors })`), or the invoke id for inline logic. */
  src: string;
}

export interface VizState {
  /** Full XState id, e.g. `sync.RUNNING.Waiting` (or a custom `id:`). */
  id: string;
  key: string;
  /** Keys from the root (excluded) to this state, e.g. ['RUNNING', 'Waiting']. Empty for the root. */
  path: string[];
  type: VizStateType;
  history: false | 'shallow' | 'deep';
  /** Parent state id, or null for the root. */
  parent: string | null;
  /** Id of the initial child (compound states). */
  initial: string | null;
  children: string[];
  entry: string[];
  exit: string[];
  /** Entry/exit actions as written in a config (see VizTransition.actionRefs). */
  entryRefs: Array<string | { type: string; params: unknown }>;
  exitRefs: Array<string | { type: string; params: unknown }>;
  invoke: VizInvoke[];
  tags: string[];
  description?: string;
  /** True when the config sets `id:` on this state (its id is not its dotted path). */
  customId: boolean;
  /** In a per-state view (views.ts): a composite state drawn as one box, with this many states inside. */
  collapsed?: number;
  /** In a per-state view: this box stands for a state outside the view (its id). */
  outside?: string;
}

export type VizTransitionKind = 'event' | 'after' | 'done.invoke' | 'error.invoke' | 'always' | 'done.state';

export interface VizTransition {
  /** Source state id. */
  source: string;
  /** Target state ids; empty for a targetless transition (actions only, no exit/entry). */
  targets: string[];
  kind: VizTransitionKind;
  /** The raw XState event type, e.g. `xstate.after.nextDelay.sync.RUNNING.Waiting`. */
  eventType: string;
  /** What triggers it, by name: `CANCEL`, `after nextDelay`, `done pollSync`, `error pollSync`, `always`, `done`. */
  trigger: string;
  /** Delay name (or ms) for `after` transitions. */
  delay?: string | number;
  /** The invoke behind `done.invoke` / `error.invoke` transitions. */
  invoke?: VizInvoke;
  guard: string | null;
  actions: string[];
  /** The guard as written in a config (name or `{ type, params }`); the display name for inline guards. */
  guardRef: string | { type: string; params: unknown } | null;
  /** The actions as written in a config; display names for inline actions. */
  actionRefs: Array<string | { type: string; params: unknown }>;
  reenter: boolean;
  /** `trigger [guard]`: the transition's label in every diagram. */
  label: string;
  /** Position among the source's transitions (stable ordering, unique edge names). */
  index: number;
}

export interface VizModel {
  name: string;
  machineId: string;
  root: VizState;
  /** Every state except the root, depth-first in definition order. */
  states: VizState[];
  byId: Map<string, VizState>;
  /** Every transition, depth-first in definition order, the root's own transitions first. */
  transitions: VizTransition[];
}

// XState's StateNode / TransitionDefinition, as far as we read them.
interface NodeLike {
  id: string;
  key: string;
  path: string[];
  type: VizStateType;
  history: false | 'shallow' | 'deep';
  states: Record<string, NodeLike>;
  initial?: { target: NodeLike[] };
  entry: unknown[];
  exit: unknown[];
  invoke: Array<{ id: string; src: unknown }>;
  transitions: Map<string, TransitionLike[]>;
  after: Array<TransitionLike & { delay: string | number }>;
  always?: TransitionLike[];
  tags: string[];
  description?: string;
  config: { id?: string };
}
interface TransitionLike {
  eventType: string;
  target?: NodeLike[] | undefined;
  guard?: unknown;
  actions: unknown[];
  reenter: boolean;
}

const AFTER_PREFIX = 'xstate.after.';

/** Name of a guard: named guards by name, `{ type, params }` by type, and/or/not/stateIn spelled out. */
export function guardName(guard: unknown): string | null {
  if (guard === undefined || guard === null) return null;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') {
    const fn = guard as { name?: string; check?: unknown; guards?: unknown[]; stateValue?: unknown };
    if (typeof fn.check === 'function') {
      if (fn.name === 'stateIn') return `stateIn(${JSON.stringify(fn.stateValue)})`;
      const inner = (fn.guards ?? []).map((g) => guardName(g) ?? '?');
      if (fn.name === 'not') return `!${inner[0] ?? '?'}`;
      return `(${inner.join(fn.name === 'or' ? ' || ' : ' && ')})`;
    }
    return 'inline guard';
  }
  if (typeof guard === 'object' && 'type' in guard && typeof (guard as { type: unknown }).type === 'string') {
    const { type, params } = guard as { type: string; params?: unknown };
    return params === undefined || typeof params === 'function' ? type : `${type}(${paramsLabel(params)})`;
  }
  return 'guard';
}

/** Name of an action; null for the raise/cancel pairs XState adds for `after` (they are drawn as delays). */
export function actionName(action: unknown): string | null {
  if (typeof action === 'string') return action;
  if (typeof action === 'function') {
    const fn = action as { type?: string; id?: unknown; sendId?: unknown; name?: string };
    if (fn.type === 'xstate.raise' && typeof fn.id === 'string' && fn.id.startsWith(AFTER_PREFIX)) return null;
    if (fn.type === 'xstate.cancel' && typeof fn.sendId === 'string' && fn.sendId.startsWith(AFTER_PREFIX)) return null;
    if (typeof fn.type === 'string' && fn.type.startsWith('xstate.')) return fn.type.slice('xstate.'.length);
    return 'inline action';
  }
  if (action && typeof action === 'object' && 'type' in action && typeof (action as { type: unknown }).type === 'string') {
    return (action as { type: string }).type;
  }
  return 'action';
}

/** `status="COMPLETED", n=2` for flat params, stable JSON otherwise. */
function paramsLabel(params: unknown): string {
  if (params && typeof params === 'object' && !Array.isArray(params)) {
    const entries = Object.keys(params).sort().map((k) => [k, (params as Record<string, unknown>)[k]] as const);
    if (entries.every(([, v]) => v === null || ['string', 'number', 'boolean'].includes(typeof v))) {
      return entries.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ');
    }
  }
  return stableJson(params);
}

/**
 * How a guard or action is referenced in a machine config: its name, or `{ type, params }` when it has
 * JSON-serialisable params; null when it is inline code (only the display name can be shown).
 */
export function configRef(value: unknown): string | { type: string; params: unknown } | null {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { type?: unknown }).type === 'string') {
    const { type, params } = value as { type: string; params?: unknown };
    if (params === undefined || typeof params === 'function') return type;
    try {
      return { type, params: JSON.parse(JSON.stringify(params)) as unknown };
    } catch {
      return type;
    }
  }
  return null;
}

function stableJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'undefined';
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  const entries = Object.keys(value as object)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${stableJson((value as Record<string, unknown>)[k])}`);
  return `{${entries.join(',')}}`;
}

function actionRefs(actions: unknown[]): Array<string | { type: string; params: unknown }> {
  return actions.flatMap((a) => {
    const name = actionName(a);
    return name === null ? [] : [configRef(a) ?? name];
  });
}

function delayLabel(delay: string | number): string {
  return typeof delay === 'number' ? `${delay}ms` : delay;
}

function invokeOf(node: NodeLike, index: number): VizInvoke {
  const def = node.invoke[index]!;
  // Inline logic is registered under a generated `<id>:invocation[i]` key: show the invoke id instead.
  const src = typeof def.src === 'string' && !def.src.includes(':invocation[') ? def.src : def.id;
  return { id: def.id, src };
}

/** Reads a machine definition into the renderer-neutral model. */
export function buildModel(name: string, machine: AnyStateMachine): VizModel {
  const rootNode = machine.root as unknown as NodeLike;
  const states: VizState[] = [];
  const byId = new Map<string, VizState>();
  const transitions: VizTransition[] = [];

  const visit = (node: NodeLike, parent: string | null): VizState => {
    const children = Object.values(node.states);
    const defaultId = [rootNode.id, ...node.path].join('.');
    const state: VizState = {
      id: node.id,
      key: node.key,
      path: [...node.path],
      type: node.type,
      history: node.history,
      parent,
      initial: node.type === 'compound' && node.initial?.target[0] ? node.initial.target[0].id : null,
      children: children.map((c) => c.id),
      entry: node.entry.map(actionName).filter((a): a is string => a !== null),
      exit: node.exit.map(actionName).filter((a): a is string => a !== null),
      entryRefs: actionRefs(node.entry),
      exitRefs: actionRefs(node.exit),
      invoke: node.invoke.map((_, i) => invokeOf(node, i)),
      tags: [...node.tags],
      ...(node.description ? { description: node.description } : {}),
      customId: parent !== null && node.id !== defaultId,
    };
    byId.set(state.id, state);
    if (parent !== null) states.push(state);
    collectTransitions(node, state);
    for (const child of children) visit(child, node.id);
    return state;
  };

  const collectTransitions = (node: NodeLike, state: VizState) => {
    let index = 0;
    const add = (
      t: TransitionLike,
      kind: VizTransitionKind,
      trigger: string,
      extra: { delay?: string | number; invoke?: VizInvoke } = {},
    ) => {
      const guard = guardName(t.guard);
      transitions.push({
        source: state.id,
        targets: (t.target ?? []).map((n) => n.id),
        kind,
        eventType: t.eventType,
        trigger,
        ...extra,
        guard,
        actions: t.actions.map(actionName).filter((a): a is string => a !== null),
        guardRef: guard === null ? null : (configRef(t.guard) ?? guard),
        actionRefs: actionRefs(t.actions),
        reenter: t.reenter,
        label: guard ? `${trigger} [${guard}]` : trigger,
        index: index++,
      });
    };
    for (const [eventType, list] of node.transitions) {
      if (eventType.startsWith(AFTER_PREFIX)) {
        const delayed = node.after.find((a) => a.eventType === eventType);
        const delay = delayed?.delay ?? eventType.slice(AFTER_PREFIX.length);
        for (const t of list) add(t, 'after', `after ${delayLabel(delay)}`, { delay });
        continue;
      }
      const invokeIndex = node.invoke.findIndex(
        (inv) => eventType === `xstate.done.actor.${inv.id}` || eventType === `xstate.error.actor.${inv.id}`,
      );
      if (invokeIndex >= 0) {
        const invoke = invokeOf(node, invokeIndex);
        const done = eventType.startsWith('xstate.done.');
        for (const t of list) add(t, done ? 'done.invoke' : 'error.invoke', `${done ? 'done' : 'error'} ${invoke.src}`, { invoke });
        continue;
      }
      if (eventType === `xstate.done.state.${node.id}`) {
        for (const t of list) add(t, 'done.state', 'done');
        continue;
      }
      for (const t of list) add(t, 'event', eventType);
    }
    for (const t of node.always ?? []) add(t, 'always', 'always');
  };

  const root = visit(rootNode, null);
  return { name, machineId: rootNode.id, root, states, byId, transitions };
}

/** The state and its ancestors (excluding the root), outermost first. */
export function ancestry(model: VizModel, id: string): VizState[] {
  const out: VizState[] = [];
  for (let s = model.byId.get(id); s && s.parent !== null; s = model.byId.get(s.parent)) out.unshift(s);
  return out;
}

/**
 * Ids of the active states for a state value: `'RUNNING.Waiting'`, `{ RUNNING: 'Waiting' }` or
 * `['RUNNING', 'Waiting']` give `sync.RUNNING` and `sync.RUNNING.Waiting`. Unknown parts are ignored.
 */
export function activeStateIds(model: VizModel, value: unknown): string[] {
  const out: string[] = [];
  const walk = (parent: VizState, v: unknown) => {
    if (typeof v === 'string') {
      // A dotted path ('RUNNING.Waiting'); keys may themselves contain dots, so match the longest key first.
      let rest = v;
      let current = parent;
      while (rest.length > 0) {
        const children = current.children.map((id) => model.byId.get(id)!).sort((a, b) => b.key.length - a.key.length);
        const next = children.find((c) => rest === c.key || rest.startsWith(`${c.key}.`));
        if (!next) return;
        out.push(next.id);
        current = next;
        rest = rest.slice(next.key.length + 1);
      }
      return;
    }
    if (Array.isArray(v)) {
      walk(parent, v.join('.'));
      return;
    }
    if (v && typeof v === 'object') {
      for (const [key, inner] of Object.entries(v as Record<string, unknown>)) {
        const child = parent.children.map((id) => model.byId.get(id)!).find((c) => c.key === key);
        if (!child) continue;
        out.push(child.id);
        if (inner !== undefined && inner !== null && !(typeof inner === 'object' && Object.keys(inner).length === 0)) walk(child, inner);
      }
    }
  };
  walk(model.root, value);
  return out;
}
