/**
 * A Stately-Studio-importable export: the machine's configuration as a `createMachine({...})` TypeScript
 * snippet (Stately's "Import from code" takes a createMachine() call; it does not take the JSON of
 * `machine.toJSON()`). Guards, delays, invoked actors and actions appear by name, so the imported
 * statechart shows the same labels as our diagrams; implementations (context factory, assign bodies,
 * guard predicates, invoke input mappers) stay in machines/ and are not exported.
 */
import type { VizModel, VizState, VizTransition } from './model.js';

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

function targetRef(model: VizModel, source: VizState, targetId: string): string {
  const target = model.byId.get(targetId)!;
  if (!target.customId && target.parent !== null) {
    if (target.parent === source.parent && source.parent !== null) return target.key; // sibling
    if (target.parent === source.id) return `.${target.key}`; // child
  }
  return `#${target.id}`;
}

/** One action as itself, several as a list, none as undefined. */
function refs(list: Array<string | { type: string; params: unknown }>): Json | undefined {
  if (list.length === 0) return undefined;
  return (list.length === 1 ? list[0] : list) as Json;
}

function transitionConfig(model: VizModel, t: VizTransition): Json {
  const source = model.byId.get(t.source)!;
  const out: Record<string, Json> = {};
  if (t.targets.length === 1) out.target = targetRef(model, source, t.targets[0]!);
  else if (t.targets.length > 1) out.target = t.targets.map((id) => targetRef(model, source, id));
  if (t.guardRef !== null) out.guard = t.guardRef as Json;
  const actions = refs(t.actionRefs);
  if (actions !== undefined) out.actions = actions;
  if (t.reenter) out.reenter = true;
  return out;
}

function group(model: VizModel, list: VizTransition[]): Json {
  const configs = list.map((t) => transitionConfig(model, t));
  return configs.length === 1 ? configs[0]! : configs;
}

/** The machine configuration, with everything referenced by name (a plain JSON-compatible object). */
export function toStatelyConfig(model: VizModel): Record<string, Json> {
  const byState = new Map<string, VizTransition[]>();
  for (const t of model.transitions) {
    const list = byState.get(t.source) ?? [];
    list.push(t);
    byState.set(t.source, list);
  }

  const stateConfig = (s: VizState): Record<string, Json> => {
    const out: Record<string, Json> = {};
    if (s.parent === null || s.customId) out.id = s.id;
    if (s.type === 'final' || s.type === 'parallel' || s.type === 'history') out.type = s.type;
    if (s.type === 'history' && s.history === 'deep') out.history = 'deep';
    if (s.initial) out.initial = model.byId.get(s.initial)!.key;
    if (s.description) out.description = s.description;
    if (s.tags.length > 0) out.tags = s.tags;
    const entry = refs(s.entryRefs);
    if (entry !== undefined) out.entry = entry;
    const exit = refs(s.exitRefs);
    if (exit !== undefined) out.exit = exit;

    const transitions = byState.get(s.id) ?? [];
    if (s.invoke.length > 0) {
      const invokes = s.invoke.map((inv) => {
        const config: Record<string, Json> = { id: inv.id, src: inv.src };
        const done = transitions.filter((t) => t.kind === 'done.invoke' && t.invoke?.id === inv.id);
        const error = transitions.filter((t) => t.kind === 'error.invoke' && t.invoke?.id === inv.id);
        if (done.length > 0) config.onDone = group(model, done);
        if (error.length > 0) config.onError = group(model, error);
        return config;
      });
      out.invoke = invokes.length === 1 ? invokes[0]! : invokes;
    }
    const after: Record<string, VizTransition[]> = {};
    const on: Record<string, VizTransition[]> = {};
    for (const t of transitions) {
      if (t.kind === 'after') (after[String(t.delay)] ??= []).push(t);
      if (t.kind === 'event') (on[t.eventType] ??= []).push(t);
    }
    if (Object.keys(after).length > 0) {
      out.after = Object.fromEntries(Object.entries(after).map(([delay, list]) => [delay, group(model, list)]));
    }
    const always = transitions.filter((t) => t.kind === 'always');
    if (always.length > 0) out.always = group(model, always);
    const onDone = transitions.filter((t) => t.kind === 'done.state');
    if (onDone.length > 0) out.onDone = group(model, onDone);
    if (Object.keys(on).length > 0) {
      out.on = Object.fromEntries(Object.entries(on).map(([event, list]) => [event, group(model, list)]));
    }
    if (s.children.length > 0) {
      out.states = Object.fromEntries(s.children.map((id) => model.byId.get(id)!).map((c) => [c.key, stateConfig(c)]));
    }
    return out;
  };
  return stateConfig(model.root);
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function quote(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n').replace(/\r/g, '\\r')}'`;
}

/** A JavaScript literal for `value`, indented two spaces per level (prettier-like). */
function literal(value: Json, indent: string): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    const flat = value.every((v) => typeof v !== 'object' || v === null);
    if (flat) {
      const one = `[${value.map((v) => literal(v, inner)).join(', ')}]`;
      if (one.length + indent.length <= 100) return one;
    }
    return `[\n${value.map((v) => `${inner}${literal(v, inner)},`).join('\n')}\n${indent}]`;
  }
  const entries = Object.entries(value);
  if (entries.length === 0) return '{}';
  return `{\n${entries.map(([k, v]) => `${inner}${IDENT.test(k) ? k : quote(k)}: ${literal(v, inner)},`).join('\n')}\n${indent}}`;
}

/** The importable snippet (a whole `.ts` file). */
export function toStatelySource(model: VizModel): string {
  const name = /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(model.name) ? `${model.name}Machine` : 'machine';
  return [
    `// ${model.name}: generated by \`banksync viz\` from the machine definition (machines/index.ts); do not edit.`,
    '// Stately Studio: Code panel > Import (or Machine > Import from code), paste this file. Guards, delays,',
    '// invoked actors and actions are referenced by name; their implementations live in machines/.',
    "import { createMachine } from 'xstate';",
    '',
    `export const ${name} = createMachine(${literal(toStatelyConfig(model), '')});`,
    '',
  ].join('\n');
}
