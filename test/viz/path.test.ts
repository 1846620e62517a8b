/** The console's diagram: the path a sync took (visited states, edges followed) on top of the current state. */
import { describe, expect, it } from 'vitest';
import { createMachine } from 'xstate';
import { highlightSvg, highlightSvgPath } from '../../src/viz/index.js';

const machine = createMachine({
  id: 'm',
  initial: 'A',
  states: {
    A: { on: { GO: 'B', SKIP: 'C' } },
    B: { initial: 'Inner', states: { Inner: { on: { NEXT: 'Other' } }, Other: {} }, on: { DONE: 'C' } },
    C: { type: 'final' },
  },
});
const machines = { m: machine };
const taken = (svg: string) => [...svg.matchAll(/class="bs-edge bs-taken" data-source="([^"]*)" data-target="([^"]*)"/g)].map((m) => `${m[1]}->${m[2]}`).sort();
const visited = (svg: string) => [...svg.matchAll(/class="bs-state[^"]*bs-visited[^"]*" data-state="([^"]*)"/g)].map((m) => m[1]).sort();

describe('highlightSvgPath', () => {
  it('marks the states entered and the edges followed, and only those', () => {
    const history = [
      { from: null, to: 'A' },
      { from: 'A', to: 'B.Inner' },
      { from: 'B.Inner', to: 'B.Other' },
      { from: 'B.Other', to: 'C' },
    ];
    const svg = highlightSvgPath('m', 'C', history, machines);
    expect(taken(svg)).toEqual(['m.A->m.B', 'm.B->m.C', 'm.B.Inner->m.B.Other']);
    expect(visited(svg)).toEqual(['m.A', 'm.B.Inner', 'm.B.Other', 'm.C']);
    // The current state is still the one filled; A -> C (SKIP) was never followed.
    expect(svg).toMatch(/class="bs-state bs-final bs-active bs-current bs-visited" data-state="m\.C"/);
    expect(svg).toContain('<path class="bs-edge" data-source="m.A" data-target="m.C"');
    expect(svg).toContain('.bs-edge.bs-taken{');
  });

  it('without history it is the plain highlight plus the path style', () => {
    const svg = highlightSvgPath('m', 'A', [], machines);
    expect(taken(svg)).toEqual([]);
    expect(svg.replace(/<style>\.bs-visited[^<]*<\/style>/, '')).toBe(highlightSvg('m', 'A', machines));
  });
});
