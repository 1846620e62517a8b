/**
 * Per-composite-state views of a machine model, so that each committed diagram stays readable at README width:
 *
 * - the **overview**: the machine's top-level states, every composite state collapsed into one box (marked
 *   `⊞ n states`); a transition into or out of a collapsed state's children is drawn to/from its box, and
 *   transitions that become identical (same ends, label and actions) are drawn once;
 * - one view **per composite state**: its children (nested composites collapsed again), its own transitions
 *   as the "<key> (any state)" box, and the states outside it that its transitions lead to or come from as
 *   plain boxes named by their dotted path.
 *
 * A view is an ordinary VizModel, so every renderer draws it unchanged.
 */
import type { VizModel, VizState, VizTransition } from './model.js';

export interface VizView {
  /** File stem: `<machine>` for the overview, `<machine>.<dotted path>` for a composite state. */
  name: string;
  /** The state the view shows the inside of (the machine root for the overview). */
  focus: VizState;
  model: VizModel;
}

/** The path of `s` below the innermost state that also contains `focus` (`Waiting`, `RUNNING.Waiting`). */
function relativePath(model: VizModel, s: VizState, focus: VizState): string {
  let common = 0;
  while (common < s.path.length - 1 && common < focus.path.length && s.path[common] === focus.path[common]) common++;
  void model;
  return s.path.slice(common).join('.');
}

function isWithin(model: VizModel, inner: string, outer: string): boolean {
  for (let s = model.byId.get(inner); s; s = s.parent === null ? undefined : model.byId.get(s.parent)) {
    if (s.id === outer) return true;
  }
  return false;
}

export interface ViewOptions {
  /** Draw transitions from outside states into the view (default true; the parent's view shows them too). */
  incoming?: boolean;
  /**
   * Draw every state outside the view as one `↗ outside <key>` box; labels then name the target
   * (`→ FAILED: EVENT [guard]`). Keeps views with many exits narrow.
   */
  mergeOutside?: boolean;
}

/** The view of `focus`'s inside (see the module comment). */
export function viewModel(model: VizModel, focus: VizState, name: string, options: ViewOptions = {}): VizModel {
  const byId = new Map<string, VizState>();
  const states: VizState[] = [];
  /** Child of focus that contains `id` (strict descendants of focus only). */
  const visibleOf = (id: string): string | null => {
    if (id === focus.id || !isWithin(model, id, focus.id)) return null;
    let s = model.byId.get(id)!;
    while (s.parent !== focus.id) s = model.byId.get(s.parent!)!;
    return s.id;
  };

  const root: VizState = {
    ...focus,
    path: [],
    parent: null,
    children: [...focus.children],
    customId: false,
  };
  byId.set(root.id, root);
  for (const childId of focus.children) {
    const child = model.byId.get(childId)!;
    const collapsed = child.children.length > 0;
    const state: VizState = {
      ...child,
      path: [child.key],
      children: [],
      initial: null,
      type: collapsed ? 'atomic' : child.type,
      ...(collapsed ? { collapsed: countDescendants(model, child) } : {}),
    };
    states.push(state);
    byId.set(state.id, state);
  }
  /** Outside states (and the machine root) that transitions of this view reach: drawn as plain boxes. */
  const outsideName = (id: string) => (id === model.root.id ? `${model.machineId} (any state)` : relativePath(model, model.byId.get(id)!, focus));
  const stub = (id: string): string => {
    const merged = options.mergeOutside === true;
    const key = `\u2197 ${merged ? `outside ${focus.key}` : outsideName(id)}`;
    const stubId = merged ? 'outside:' : `outside:${id}`;
    if (!byId.has(stubId)) {
      const original = model.byId.get(id)!;
      const state: VizState = {
        id: stubId,
        key,
        path: [key],
        type: original.type === 'final' && !merged ? 'final' : 'atomic',
        history: false,
        parent: root.id,
        initial: null,
        children: [],
        entry: [],
        exit: [],
        entryRefs: [],
        exitRefs: [],
        invoke: [],
        tags: [],
        customId: false,
        outside: merged ? '' : id,
      };
      states.push(state);
      byId.set(stubId, state);
      root.children.push(stubId);
    }
    return stubId;
  };

  const transitions: VizTransition[] = [];
  const seen = new Set<string>();
  const indexBySource = new Map<string, number>();
  for (const t of model.transitions) {
    const sourceInside = visibleOf(t.source);
    const ownTransition = t.source === focus.id;
    const targetsInside = t.targets.map(visibleOf);
    if (!ownTransition && sourceInside === null && targetsInside.every((v) => v === null)) continue;
    if (options.incoming === false && !ownTransition && sourceInside === null) continue;
    if (t.targets.length === 0 && !ownTransition && sourceInside !== t.source) continue; // shown in a deeper view
    // Wholly inside one collapsed child (its children's traffic): that child's own view shows it.
    if (
      sourceInside !== null &&
      sourceInside !== t.source &&
      t.targets.length > 0 &&
      targetsInside.every((v) => v === sourceInside)
    ) {
      continue;
    }
    const source = ownTransition ? root.id : (sourceInside ?? stub(t.source));
    const targets = t.targets.map((id, i) => (id === focus.id ? root.id : (targetsInside[i] ?? stub(id))));
    const named = { trigger: t.trigger, label: t.label };
    if (options.mergeOutside === true) {
      const outside = t.targets.filter((_, i) => targets[i]!.startsWith('outside:'));
      if (outside.length > 0) named.trigger = `\u2192 ${outside.map(outsideName).join(', ')}: ${t.trigger}`;
      if (sourceInside === null && !ownTransition) named.trigger = `${outsideName(t.source)} \u2192 ${named.trigger}`;
      named.label = t.guard ? `${named.trigger} [${t.guard}]` : named.trigger;
    }
    const key = JSON.stringify([source, targets, named.label, t.actions, t.reenter]);
    if (seen.has(key)) continue;
    seen.add(key);
    const index = indexBySource.get(source) ?? 0;
    indexBySource.set(source, index + 1);
    transitions.push({ ...t, ...named, source, targets, index });
  }
  return { name, machineId: focus.parent === null ? model.machineId : focus.key, root, states, byId, transitions };
}

function countDescendants(model: VizModel, s: VizState): number {
  return s.children.reduce((n, id) => n + 1 + countDescendants(model, model.byId.get(id)!), 0);
}

/** The overview and one view per composite state (depth-first, definition order). */
export function machineViews(model: VizModel): VizView[] {
  const views: VizView[] = [{ name: model.name, focus: model.root, model: viewModel(model, model.root, model.name) }];
  for (const s of model.states) {
    if (s.children.length === 0) continue;
    const name = `${model.name}.${s.path.join('.')}`;
    views.push({ name, focus: s, model: viewModel(model, s, name) });
  }
  return views;
}
