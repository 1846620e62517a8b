import { describe, expect, it } from 'vitest';
import { createMachine } from 'xstate';
import { buildModel, machineViews, toSvg, viewModel } from '../../src/viz/index.js';

// A: composite (a1 -> a2 inside), both children leave to B on GO; B enters A.a2 directly on BACK.
const machine = createMachine({
  id: 'm',
  initial: 'A',
  states: {
    A: {
      initial: 'a1',
      on: { STOP: '#m.C' },
      states: {
        a1: { on: { NEXT: 'a2', GO: '#m.B' } },
        a2: { on: { GO: '#m.B', PING: {} } },
      },
    },
    B: { on: { BACK: 'A.a2' } },
    C: { type: 'final' },
  },
});
const model = buildModel('m', machine);
const id = (path: string) => model.states.find((s) => s.path.join('.') === path)!.id;
const edges = (vm: ReturnType<typeof viewModel>) => vm.transitions.map((t) => `${t.source} -${t.label}-> ${t.targets.join(',')}`);

describe('machine views', () => {
  it('overview: composite states collapsed, their children\'s edges drawn to the box once, inner traffic left out', () => {
    const [overview, ...rest] = machineViews(model);
    expect(overview!.name).toBe('m');
    expect(rest.map((v) => v.name)).toEqual(['m.A']);
    const vm = overview!.model;
    expect(vm.states.map((s) => s.key)).toEqual(['A', 'B', 'C']);
    expect(vm.byId.get(id('A'))!.collapsed).toBe(2);
    expect(vm.byId.get(id('A'))!.children).toEqual([]);
    expect(edges(vm).sort()).toEqual([`${id('A')} -GO-> ${id('B')}`, `${id('A')} -STOP-> ${id('C')}`, `${id('B')} -BACK-> ${id('A')}`].sort());
    const svg = toSvg(vm);
    expect(svg).toContain(`class="bs-state bs-collapsed" data-state="${id('A')}"`);
    expect(svg).toContain('\u229e 2 states inside');
    expect(svg).not.toContain(`data-state="${id('A.a1')}"`);
  });

  it('a composite state\'s view: its children, its own transitions from the "(any state)" box, outside states as ↗ boxes', () => {
    const vm = machineViews(model)[1]!.model;
    expect(vm.root.id).toBe(id('A'));
    expect(vm.machineId).toBe('A');
    expect(vm.states.map((s) => s.key)).toEqual(['a1', 'a2', '\u2197 C', '\u2197 B']);
    expect(edges(vm)).toEqual([
      `${id('A')} -STOP-> outside:${id('C')}`,
      `${id('A.a1')} -NEXT-> ${id('A.a2')}`,
      `${id('A.a1')} -GO-> outside:${id('B')}`,
      `${id('A.a2')} -GO-> outside:${id('B')}`,
      `${id('A.a2')} -PING-> `,
      `outside:${id('B')} -BACK-> ${id('A.a2')}`,
    ]);
    const svg = toSvg(vm);
    expect(svg).toContain('A (any state)');
    expect(svg).toContain(`data-outside="${id('B')}"`);
  });

  it('merging outside states: one ↗ box, labels name where each transition goes or comes from', () => {
    const vm = viewModel(model, model.byId.get(id('A'))!, 'm.A', { mergeOutside: true });
    expect(vm.states.map((s) => s.key)).toEqual(['a1', 'a2', '\u2197 outside A']);
    expect(vm.transitions.map((t) => t.label)).toEqual(['\u2192 C: STOP', 'NEXT', '\u2192 B: GO', '\u2192 B: GO', 'PING', 'B \u2192 BACK']);
  });

  it('legend mode: edges carry numbers, the legend lists each number\'s transitions', () => {
    const svg = toSvg(machineViews(model)[1]!.model, { legend: true, compact: true });
    const legend = /<g class="bs-legend">([\s\S]*?)<\/g>/.exec(svg)![1]!;
    const texts = [...legend.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
    expect(texts).toContain('NEXT');
    expect(texts).toContain('STOP');
    expect(texts.filter((t) => /^\d+$/.test(t!)).map(Number)).toEqual([1, 2, 3, 4, 5]);
    const labels = [...svg.matchAll(/<g class="bs-label">[\s\S]*?<text[^>]*>([^<]*)<\/text><\/g>/g)].map((m) => m[1]);
    expect(labels.sort()).toEqual(['1', '2', '3', '4', '5']);
  });
});
