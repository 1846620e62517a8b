/**
 * Compares the committed dagre layout of a machine diagram with elkjs's layered layout (the algorithm Stately's
 * visualizer uses) on the same boxes and labels: drawing size, width at README width (800 px) as a label scale,
 * and edge crossings. `npx tsx bench/layout-compare.ts [machine ...]` (default: every machine), one row pair per
 * committed SVG (overview and per-composite-state views). Node and label sizes are read from the generated SVG,
 * so both layouts place exactly the same boxes. For views drawn with a legend, the dagre width includes the
 * legend and the elk width does not (the legend would add the same block below either layout).
 */
import ElkModule from 'elkjs/lib/elk.bundled.js';
import { machines } from '../machines/index.js';
import { buildModel, machineViews, renderMachine, type VizModel } from '../src/viz/index.js';

interface Pt {
  x: number;
  y: number;
}
type Polyline = Pt[];

const README_WIDTH = 800;
const LABEL_PX = 10.5;

function crossings(lines: Polyline[]): number {
  const cross = (a: Pt, b: Pt, c: Pt, d: Pt): boolean => {
    const o = (p: Pt, q: Pt, r: Pt) => Math.sign((q.x - p.x) * (r.y - p.y) - (q.y - p.y) * (r.x - p.x));
    return o(a, b, c) * o(a, b, d) < 0 && o(c, d, a) * o(c, d, b) < 0;
  };
  let n = 0;
  for (let i = 0; i < lines.length; i++) {
    for (let j = i + 1; j < lines.length; j++) {
      const [p, q] = [lines[i]!, lines[j]!];
      let hit = false;
      for (let s = 0; s + 1 < p.length && !hit; s++) for (let t = 0; t + 1 < q.length && !hit; t++) hit = cross(p[s]!, p[s + 1]!, q[t]!, q[t + 1]!);
      if (hit) n++;
    }
  }
  return n;
}

function pathPoints(d: string): Polyline {
  return [...d.matchAll(/(-?[\d.]+),(-?[\d.]+)/g)].map((m) => ({ x: Number(m[1]), y: Number(m[2]) }));
}

/** `name` is a committed SVG's stem: a machine's overview or one composite state's view (`synchronization.RUNNING`). */
async function compare(name: string, model: VizModel, svg: string): Promise<void> {
  const [, w, h] = /width="(\d+)" height="(\d+)"/.exec(svg)!;
  const dagreEdges = [...svg.matchAll(/<path class="bs-edge" data-source="([^"]*)" data-target="([^"]*)" d="([^"]*)"/g)];
  const dagreLines = dagreEdges.map((m) => pathPoints(m[3]!));
  const labels = [...svg.matchAll(/<g class="bs-label"><rect x="[^"]*" y="[^"]*" width="([\d.]+)" height="([\d.]+)"/g)].map((m) => ({ width: Number(m[1]), height: Number(m[2]) }));
  const boxes = new Map<string, { width: number; height: number }>();
  for (const m of svg.matchAll(/<g class="bs-state[^"]*" data-(state|outside)="([^"]*)"><(?:rect|circle) class="bs-box" (?:x="[^"]*" y="[^"]*" width="([\d.]+)" height="([\d.]+)"|cx="[^"]*" cy="[^"]*" r="([\d.]+)")/g)) {
    const id = m[1] === 'outside' ? `outside:${m[2]!}` : m[2]!;
    boxes.set(id, m[5] ? { width: 2 * Number(m[5]), height: 2 * Number(m[5]) } : { width: Number(m[3]), height: Number(m[4]) });
  }
  const headers = new Map<string, { width: number; height: number }>();
  for (const m of svg.matchAll(/<g class="bs-cluster[^"]*" data-state="([^"]*)"><rect class="bs-frame"[^>]*\/><rect class="bs-header" x="[^"]*" y="[^"]*" width="([\d.]+)" height="([\d.]+)"/g)) {
    headers.set(m[1]!, { width: Number(m[2]), height: Number(m[3]) });
  }

  // The ELK graph: composites as compound nodes (padded for their title), leaves with their boxes.
  type ElkNode = { id: string; width?: number; height?: number; children?: ElkNode[]; layoutOptions?: Record<string, string>; labels?: unknown[] };
  const build = (id: string): ElkNode => {
    const s = model.byId.get(id)!;
    if (s.children.length === 0) return { id, ...(boxes.get(id) ?? { width: 90, height: 30 }) };
    const header = headers.get(id) ?? { width: 90, height: 30 };
    return {
      id,
      children: s.children.map(build),
      layoutOptions: { 'elk.padding': `[top=${header.height + 16},left=16,bottom=16,right=16]`, 'elk.nodeSize.minimum': `(${header.width + 32}, ${header.height + 40})`, 'elk.nodeSize.constraints': 'MINIMUM_SIZE' },
    };
  };
  const edges = dagreEdges.map((m, i) => ({
    id: `e${i}`,
    // The "(any state)" box is not a node here: its edges start (or end) at the first state instead.
    sources: [m[1] === model.root.id ? model.root.children[0]! : m[1]!],
    targets: [m[2] === model.root.id ? model.root.children[0]! : m[2]!],
    labels: [{ text: `l${i}`, ...(labels[i] ?? { width: 40, height: 14 }) }],
  }));
  const graph = {
    id: 'root',
    layoutOptions: {
      'elk.algorithm': 'layered',
      'elk.direction': 'DOWN',
      'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
      'elk.edgeRouting': 'ORTHOGONAL',
      'elk.layered.spacing.nodeNodeBetweenLayers': '36',
      'elk.spacing.nodeNode': '28',
      'elk.spacing.edgeLabel': '4',
      'elk.edgeLabels.inline': 'false',
      'elk.layered.crossingMinimization.strategy': 'LAYER_SWEEP',
      'elk.json.edgeCoords': 'ROOT',
      'elk.json.shapeCoords': 'ROOT',
    },
    children: model.root.children.map(build),
    edges,
  };
  // elkjs is CommonJS: under NodeNext its default import is the constructor at run time.
  const Elk = ElkModule as unknown as new () => { layout(graph: unknown): Promise<unknown> };
  const elk = new Elk();
  const out = (await elk.layout(graph as never)) as unknown as { width: number; height: number; edges: { sections?: { startPoint: Pt; endPoint: Pt; bendPoints?: Pt[] }[] }[] };
  const elkLines = out.edges.map((e) => (e.sections ?? []).flatMap((s) => [s.startPoint, ...(s.bendPoints ?? []), s.endPoint]));
  const row = (layout: string, width: number, height: number, lines: Polyline[]) =>
    `${name.padEnd(48)} ${layout.padEnd(6)} ${String(Math.round(width)).padStart(5)} x ${String(Math.round(height)).padEnd(5)} labels at 800 px: ${((LABEL_PX * Math.min(1, README_WIDTH / width)).toFixed(1) + ' px').padEnd(8)} crossings: ${crossings(lines)}`;
  console.log(row('dagre', Number(w), Number(h), dagreLines));
  console.log(row('elk', out.width, out.height, elkLines));
}

// Every committed SVG: the overview and the view of each composite state, as `banksync viz` writes them.
for (const machine of process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(machines).sort()) {
  const full = buildModel(machine, machines[machine]!);
  const files = renderMachine(machine, machines[machine]!);
  for (const view of machineViews(full)) {
    const svg = files[`${view.name}.svg`]!;
    // The committed view may merge outside states (see renderView): read the model back from its boxes.
    const merged = svg.includes('data-outside=""');
    const model = merged ? (await import('../src/viz/views.js')).viewModel(full, view.focus, view.name, { mergeOutside: true }) : view.model;
    await compare(view.name, model, svg);
  }
}
