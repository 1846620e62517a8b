/**
 * Offline SVG rendering of a machine model: layout with @dagrejs/dagre (a compound graph: composite states
 * are clusters), then plain SVG text written here. No browser, no network, no font measurement; the same
 * machine gives byte-identical output.
 *
 * Drawing conventions: rounded boxes for states (name, then `entry /`, `invoke /`, `exit /` lines),
 * double border for final states, clusters for composite states (title and behaviour lines at the top),
 * a black dot with an arrow for each initial state, edges labelled `EVENT [guard]` with `/ actions`
 * below. A transition to or from a composite state ends at its border. The machine's own transitions
 * (root `after`/`on`) leave a dashed "<id> (any state)" box.
 *
 * Every state group carries `data-state="<state id>"` and class `bs-state` (`bs-cluster` for composite
 * states), so a page can highlight the current state (see `highlightSvgStates`).
 */
import dagre from '@dagrejs/dagre';
import { behaviourLines } from './mermaid.js';
import type { VizModel, VizState, VizTransition } from './model.js';
import { escapeXml, fmt, textWidth } from './text.js';

const FONT = 'Helvetica, Arial, sans-serif';
const TITLE_SIZE = 13;
const DETAIL_SIZE = 10.5;
const LABEL_SIZE = 10.5;
const LINE = 1.3;
const PAD_X = 12;
const PAD_Y = 8;
const MIN_STATE_WIDTH = 90;
const DOT = 12;

interface Point {
  x: number;
  y: number;
}
interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

type NodeKind = 'state' | 'header' | 'cluster' | 'initial' | 'exit' | 'any';
interface NodeData {
  kind: NodeKind;
  width: number;
  height: number;
  x?: number;
  y?: number;
  /** The state this node draws (or, for an initial dot, whose initial state it marks). */
  stateId: string;
}
interface EdgeData {
  width: number;
  height: number;
  labelpos: 'c';
  minlen: number;
  weight: number;
  x?: number;
  y?: number;
  points?: Point[];
  transitions: VizTransition[];
  lines: Array<{ text: string; actions: boolean }>;
  invisible?: boolean;
}

function nodeSize(title: string, details: string[]): { width: number; height: number } {
  const widths = [textWidth(title, TITLE_SIZE, true), ...details.map((d) => textWidth(d, DETAIL_SIZE))];
  const width = Math.max(MIN_STATE_WIDTH, Math.max(...widths) + 2 * PAD_X);
  const height = TITLE_SIZE * LINE + (details.length > 0 ? 6 + details.length * DETAIL_SIZE * LINE : 0) + 2 * PAD_Y;
  return { width: Math.ceil(width), height: Math.ceil(height) };
}

function stateTitle(s: VizState): string {
  if (s.type === 'history') return s.history === 'deep' ? 'H*' : 'H';
  return s.type === 'parallel' ? `${s.key} (parallel)` : s.key;
}

/** Where the segment from `outside` to `inside` crosses the border of `r` (center-based rect). */
function borderPoint(outside: Point, inside: Point, r: Rect): Point {
  const left = r.x - r.width / 2;
  const right = r.x + r.width / 2;
  const top = r.y - r.height / 2;
  const bottom = r.y + r.height / 2;
  const dx = inside.x - outside.x;
  const dy = inside.y - outside.y;
  let best = 1;
  const consider = (t: number, onEdge: (p: Point) => boolean) => {
    if (t >= 0 && t <= 1 && t < best) {
      const p = { x: outside.x + t * dx, y: outside.y + t * dy };
      if (onEdge(p)) best = t;
    }
  };
  if (dx !== 0) {
    consider((left - outside.x) / dx, (p) => p.y >= top - 0.01 && p.y <= bottom + 0.01);
    consider((right - outside.x) / dx, (p) => p.y >= top - 0.01 && p.y <= bottom + 0.01);
  }
  if (dy !== 0) {
    consider((top - outside.y) / dy, (p) => p.x >= left - 0.01 && p.x <= right + 0.01);
    consider((bottom - outside.y) / dy, (p) => p.x >= left - 0.01 && p.x <= right + 0.01);
  }
  return { x: outside.x + best * dx, y: outside.y + best * dy };
}

function inside(p: Point, r: Rect): boolean {
  return Math.abs(p.x - r.x) < r.width / 2 - 0.01 && Math.abs(p.y - r.y) < r.height / 2 - 0.01;
}

/** Cuts the path where it first enters `r`, walking from points[0]. */
function clipEnd(points: Point[], r: Rect): Point[] {
  const k = points.findIndex((p) => inside(p, r));
  if (k <= 0) return points;
  return [...points.slice(0, k), borderPoint(points[k - 1]!, points[k]!, r)];
}

/** A smooth path through dagre's points (clamped uniform cubic B-spline: starts and ends on the points). */
function splinePath(points: Point[]): string {
  if (points.length === 0) return '';
  const first = points[0]!;
  if (points.length === 1) return `M${fmt(first.x)},${fmt(first.y)}`;
  if (points.length === 2) return `M${fmt(first.x)},${fmt(first.y)}L${fmt(points[1]!.x)},${fmt(points[1]!.y)}`;
  const last = points[points.length - 1]!;
  const e = [first, first, ...points, last, last];
  let d = `M${fmt(first.x)},${fmt(first.y)}`;
  for (let i = 0; i + 3 < e.length; i++) {
    const [a, b, c, f] = [e[i]!, e[i + 1]!, e[i + 2]!, e[i + 3]!];
    const c1 = { x: (2 * b.x + c.x) / 3, y: (2 * b.y + c.y) / 3 };
    const c2 = { x: (b.x + 2 * c.x) / 3, y: (b.y + 2 * c.y) / 3 };
    const end = { x: (b.x + 4 * c.x + f.x) / 6, y: (b.y + 4 * c.y + f.y) / 6 };
    void a;
    d += `C${fmt(c1.x)},${fmt(c1.y)} ${fmt(c2.x)},${fmt(c2.y)} ${fmt(end.x)},${fmt(end.y)}`;
  }
  return d;
}

/** The point halfway along a polyline. */
function halfway(points: Point[]): Point {
  const lengths = points.slice(1).map((p, i) => Math.hypot(p.x - points[i]!.x, p.y - points[i]!.y));
  let rest = lengths.reduce((a, b) => a + b, 0) / 2;
  for (let i = 0; i < lengths.length; i++) {
    if (rest <= lengths[i]! && lengths[i]! > 0) {
      const t = rest / lengths[i]!;
      return { x: points[i]!.x + t * (points[i + 1]!.x - points[i]!.x), y: points[i]!.y + t * (points[i + 1]!.y - points[i]!.y) };
    }
    rest -= lengths[i]!;
  }
  return points[points.length - 1]!;
}

function textBlock(x: number, top: number, title: string, details: string[], titleClass: string): string {
  let out = `<text class="${titleClass}" x="${fmt(x)}" y="${fmt(top + TITLE_SIZE)}" text-anchor="middle">${escapeXml(title)}</text>`;
  let y = top + TITLE_SIZE * LINE + 6;
  for (const line of details) {
    y += DETAIL_SIZE * LINE;
    out += `<text class="bs-detail" x="${fmt(x)}" y="${fmt(y - 3)}" text-anchor="middle">${escapeXml(line)}</text>`;
  }
  return out;
}

export interface SvgOptions {
  /** Prefix of ids inside the SVG (markers), unique per diagram on one page. Default: the model name. */
  idPrefix?: string;
  rankdir?: 'TB' | 'LR';
  /**
   * Edges carry numbers instead of their labels; a legend below the diagram lists every number's
   * transitions in full. Keeps dense diagrams narrow enough to read at README width.
   */
  legend?: boolean;
  /** Legend mode: at most this many sinks (states no drawn edge leaves) share a rank (default 3). */
  sinksPerRank?: number;
  /** Legend mode: tighter spacing between nodes and edges. */
  compact?: boolean;
}

/** Legend lines wrap at this many characters. */
const LEGEND_WRAP = 84;
/** Lines inside states wrap at this many characters in legend mode. */
const LEGEND_INNER_WRAP = 40;

/** Edge labels wrap at this many characters; lines inside states at INNER_WRAP. */
const WRAP = 30;
const INNER_WRAP = 64;

/** Splits `items` joined by `sep` into lines of at most `wrap` characters (a longer item stays whole). */
function wrapList(first: string, items: string[], sep: string, wrap = WRAP): string[] {
  const lines: string[] = [];
  let current = first;
  items.forEach((item, i) => {
    const piece = i < items.length - 1 ? `${item}${sep.trimEnd()}` : item;
    if (current.trim().length > 0 && current.length + piece.length + 1 > wrap) {
      lines.push(current.trimEnd());
      current = piece;
    } else {
      current = current.length === 0 || current.endsWith(' ') ? `${current}${piece}` : `${current} ${piece}`;
    }
  });
  if (current.trim().length > 0) lines.push(current.trimEnd());
  return lines;
}

/** A transition as label lines: `trigger [guard]` (split when long), then `/ actions` wrapped. */
function transitionLines(t: VizTransition, prefix = '', wrap = WRAP): Array<{ text: string; actions: boolean }> {
  const head = `${prefix}${t.label}${t.reenter ? ' (reenter)' : ''}`;
  const actions = t.actions.length > 0 ? ` / ${t.actions.join(', ')}` : '';
  if (wrap > WRAP && head.length + actions.length <= wrap) return [{ text: `${head}${actions}`, actions: false }];
  const lines: Array<{ text: string; actions: boolean }> = [];
  if (head.length <= wrap || t.guard === null) lines.push({ text: head, actions: false });
  else {
    lines.push({ text: `${prefix}${t.trigger}`, actions: false });
    lines.push({ text: `[${t.guard}]${t.reenter ? ' (reenter)' : ''}`, actions: false });
  }
  if (t.actions.length > 0) for (const text of wrapList('/ ', t.actions, ', ', wrap)) lines.push({ text, actions: true });
  return lines;
}

/**
 * Lines drawn inside a state: behaviour (entry, invoke, exit), then its transitions that draw no edge:
 * targetless ones (actions only) and, for composite states, transitions to itself (marked ↻).
 */
function stateLines(model: VizModel, s: VizState, wrap = INNER_WRAP): string[] {
  const inner = model.transitions
    .filter((t) => t.source === s.id && (t.targets.length === 0 || (s.children.length > 0 && t.targets.every((id) => id === s.id))))
    .flatMap((t) => transitionLines(t, t.targets.length > 0 ? '\u21bb ' : '', wrap).map((l) => l.text));
  const collapsed = s.collapsed ? [`\u229e ${s.collapsed} states inside`] : [];
  return [...behaviourLines(s), ...collapsed, ...inner];
}

type Side = 'top' | 'bottom';
type Graph = InstanceType<typeof dagre.graphlib.Graph<Record<string, unknown>, NodeData, EdgeData>>;

/** Whether state `inner` is `outer` or one of its descendants. */
function isWithin(model: VizModel, inner: string, outer: string): boolean {
  for (let s = model.byId.get(inner); s; s = s.parent === null ? undefined : model.byId.get(s.parent)) {
    if (s.id === outer) return true;
  }
  return false;
}

/**
 * Builds and lays out the dagre graph. A composite state is a cluster holding its title node (`h:`, on
 * top), its initial dot and, when used, a bottom anchor (`x:`, below every child). An edge to or from a
 * composite state attaches to its title or its bottom anchor, as `sides` says (default: enter at the top,
 * leave at the bottom), and is later cut at the cluster border.
 */
function layoutGraph(model: VizModel, drawn: VizTransition[], rankdir: 'TB' | 'LR', sides: Map<string, Side>, options: SvgOptions = {}): Graph {
  const legend = options.legend === true;
  const innerWrap = legend ? LEGEND_INNER_WRAP : INNER_WRAP;
  const g: Graph = new dagre.graphlib.Graph<Record<string, unknown>, NodeData, EdgeData>({ compound: true, multigraph: true });
  const compact = legend && options.compact === true;
  g.setGraph({ rankdir, nodesep: compact ? 12 : 28, ranksep: 36, edgesep: compact ? 6 : 12, marginx: compact ? 10 : 16, marginy: 16 });
  const isComposite = (id: string) => (model.byId.get(id)?.children.length ?? 0) > 0;
  const clusterOf = (stateId: string | null) => (stateId === null || stateId === model.root.id ? undefined : `c:${stateId}`);

  /** Endpoint node of a transition (`end` says which end) at state `stateId`, for transition key `key`. */
  const endpoint = (stateId: string, other: string, end: 'source' | 'target', key: string): string => {
    if (stateId === model.root.id) return 'any';
    if (!isComposite(stateId)) return `s:${stateId}`;
    // Between a composite and its own descendants, edges attach to the composite's title.
    if (isWithin(model, other, stateId)) return `h:${stateId}`;
    const side = sides.get(`${key}:${end}`) ?? (end === 'target' ? 'top' : 'bottom');
    return side === 'top' ? `h:${stateId}` : `x:${stateId}`;
  };

  // One edge per (source node, target node); its label stacks every transition between them.
  const groups = new Map<string, { v: string; w: string; transitions: VizTransition[] }>();
  drawn.forEach((t, i) => {
    for (const target of t.targets) {
      const key = `${i}:${target}`;
      const w = endpoint(target, t.source, 'target', key);
      const v = endpoint(t.source, target, 'source', key);
      const id = `${v}\u0000${w}`;
      const group = groups.get(id) ?? { v, w, transitions: [] };
      group.transitions.push(t);
      groups.set(id, group);
    }
  });
  const anchored = new Set([...groups.values()].flatMap(({ v, w }) => [v, w]).filter((n) => n.startsWith('x:')).map((n) => n.slice(2)));

  const rootLines = stateLines(model, model.root, innerWrap);
  const needsAny = rootLines.length > 0 || drawn.some((t) => t.source === model.root.id || t.targets.includes(model.root.id));
  if (needsAny) g.setNode('any', { kind: 'any', stateId: model.root.id, ...nodeSize(`${model.machineId} (any state)`, rootLines) });
  if (model.root.initial) g.setNode(`i:${model.root.id}`, { kind: 'initial', stateId: model.root.id, width: DOT, height: DOT });

  const add = (name: string, data: NodeData, inCluster: string | undefined) => {
    g.setNode(name, data);
    if (inCluster) g.setParent(name, inCluster);
  };
  for (const s of model.states) {
    const parent = clusterOf(s.parent);
    if (isComposite(s.id)) {
      add(`c:${s.id}`, { kind: 'cluster', stateId: s.id, width: 0, height: 0 }, parent);
      add(`h:${s.id}`, { kind: 'header', stateId: s.id, ...nodeSize(stateTitle(s), stateLines(model, s, innerWrap)) }, `c:${s.id}`);
      if (s.initial) add(`i:${s.id}`, { kind: 'initial', stateId: s.id, width: DOT, height: DOT }, `c:${s.id}`);
      if (anchored.has(s.id)) add(`x:${s.id}`, { kind: 'exit', stateId: s.id, width: 1, height: 1 }, `c:${s.id}`);
    } else {
      const size = s.type === 'history' ? { width: 30, height: 30 } : nodeSize(stateTitle(s), stateLines(model, s, innerWrap));
      add(`s:${s.id}`, { kind: 'state', stateId: s.id, ...size }, parent);
    }
  }

  const edge = (v: string, w: string, name: string, data: Partial<EdgeData>) =>
    g.setEdge(v, w, { width: 0, height: 0, labelpos: 'c', minlen: 1, weight: 1, lines: [], transitions: [], ...data }, name);
  for (const s of model.states) {
    if (!isComposite(s.id)) continue;
    // Title on top (title -> initial dot -> initial state); bottom anchor below every child.
    if (s.initial) edge(`h:${s.id}`, `i:${s.id}`, `title:${s.id}`, { weight: 4, invisible: true });
    if (anchored.has(s.id)) {
      for (const childId of s.children) {
        const child = isComposite(childId) ? (anchored.has(childId) ? `x:${childId}` : `h:${childId}`) : `s:${childId}`;
        edge(child, `x:${s.id}`, `bottom:${childId}`, { invisible: true });
      }
    }
  }
  for (const s of [model.root, ...model.states]) {
    if (s.initial) edge(`i:${s.id}`, isComposite(s.initial) ? `h:${s.initial}` : `s:${s.initial}`, `initial:${s.id}`, { weight: 4 });
  }
  // Legend mode: sinks (states no drawn edge leaves) alternate between two ranks, so a row of final or
  // outside states does not set the diagram's width.
  const sinkRank = new Map<string, number>();
  if (legend) {
    const sources = new Set([...groups.values()].map(({ v }) => v));
    const sinks = [...new Set([...groups.values()].map(({ w }) => w).filter((w) => w.startsWith('s:') && !sources.has(w)))];
    const rows = Math.max(1, Math.ceil(sinks.length / Math.max(1, options.sinksPerRank ?? 3)));
    sinks.forEach((w, i) => sinkRank.set(w, 1 + (i % rows)));
  }
  let n = 0;
  for (const { v, w, transitions } of groups.values()) {
    const lines = legend ? [{ text: String(n + 1), actions: false }] : transitions.flatMap((t) => transitionLines(t));
    // Compact legend mode: a number takes no room of its own beside its edge (it is drawn on the edge).
    const width = compact ? 0 : Math.max(...lines.map((l) => textWidth(l.text, LABEL_SIZE, !l.actions))) + 8;
    const height = Math.ceil(lines.length * LABEL_SIZE * LINE + 4);
    edge(v, w, `t${n++}`, { width, height, transitions, lines, minlen: sinkRank.get(w) ?? 1 });
  }
  dagre.layout(g);
  return g;
}

export function toSvg(model: VizModel, options: SvgOptions = {}): string {
  const prefix = (options.idPrefix ?? model.name).replace(/[^A-Za-z0-9_-]/g, '_');
  const legend = options.legend === true;
  const innerWrap = legend ? LEGEND_INNER_WRAP : INNER_WRAP;
  const rankdir = options.rankdir ?? 'TB';
  const isComposite = (s: VizState) => s.children.length > 0;
  // Targetless transitions and a composite's transitions to itself are written inside the state instead.
  const drawn = model.transitions.filter(
    (t) => t.targets.length > 0 && !(isComposite(model.byId.get(t.source) ?? model.root) && t.targets.every((id) => id === t.source)),
  );
  const rootLines = stateLines(model, model.root, innerWrap);

  // Pass 1 with default sides; pass 2 attaches each composite end on the side facing the other end, so
  // edges do not run through a cluster to reach its far side (and their labels stay on the visible part).
  const first = layoutGraph(model, drawn, rankdir, new Map(), options);
  const axis = (node: NodeData | undefined) => (rankdir === 'TB' ? (node?.y ?? 0) : (node?.x ?? 0));
  const size = (node: NodeData | undefined) => (rankdir === 'TB' ? (node?.height ?? 0) : (node?.width ?? 0));
  const centerOf = (stateId: string): number => {
    if (stateId === model.root.id) return axis(first.node('any'));
    return axis(first.node(model.byId.get(stateId)!.children.length > 0 ? `c:${stateId}` : `s:${stateId}`));
  };
  /** Where the other end lies relative to composite `c`: before it, after it, or beside it (within its span). */
  const sideFor = (c: string, other: string): Side => {
    const cluster = first.node(`c:${c}`);
    const o = centerOf(other);
    // Beside: the path runs inside the cluster anyway, so it attaches to the (visible) title.
    return o > axis(cluster) + size(cluster) / 2 ? 'bottom' : 'top';
  };
  const sides = new Map<string, Side>();
  drawn.forEach((t, i) => {
    for (const target of t.targets) {
      const key = `${i}:${target}`;
      if (model.byId.get(target)?.children.length && !isWithin(model, t.source, target)) sides.set(`${key}:target`, sideFor(target, t.source));
      if (model.byId.get(t.source)?.children.length && !isWithin(model, target, t.source)) sides.set(`${key}:source`, sideFor(t.source, target));
    }
  });
  const g = layoutGraph(model, drawn, rankdir, sides, options);

  const rectOf = (name: string): Rect => {
    const node = g.node(name);
    return { x: node.x ?? 0, y: node.y ?? 0, width: node.width, height: node.height };
  };
  /** Whether a graph node lies within state `stateId` (the state itself or a descendant). */
  const within = (name: string, stateId: string): boolean => {
    const node = g.node(name);
    if (node.kind === 'any') return stateId === model.root.id;
    for (let s = model.byId.get(node.stateId); s; s = s.parent === null ? undefined : model.byId.get(s.parent)) {
      if (s.id === stateId) return true;
    }
    return false;
  };

  const graph = g.graph() as { width?: number; height?: number };
  // The legend: `n  EVENT [guard] / actions` for every numbered edge, below the diagram.
  const legendLines: Array<{ text: string; actions: boolean; no?: string }> = [];
  if (legend) {
    const numbered: EdgeData[] = [];
    for (const e of g.edges()) {
      const data = g.edge(e);
      if (!data.invisible && data.transitions.length > 0) numbered.push(data);
    }
    numbered.sort((x: EdgeData, y: EdgeData) => Number(x.lines[0]!.text) - Number(y.lines[0]!.text));
    for (const data of numbered) {
      data.transitions.forEach((t: VizTransition, i: number) => {
        transitionLines(t, '', LEGEND_WRAP).forEach((line, j) => legendLines.push({ ...line, ...(i === 0 && j === 0 ? { no: data.lines[0]!.text } : {}) }));
      });
    }
  }
  const LEGEND_INDENT = 28;
  const graphHeight = Math.ceil(graph.height ?? 0);
  const legendWidth = legendLines.length === 0 ? 0 : 16 + LEGEND_INDENT + Math.max(...legendLines.map((l) => textWidth(l.text, LABEL_SIZE, !l.actions))) + 16;
  const width = Math.max(Math.ceil(graph.width ?? 0), Math.ceil(legendWidth));
  const height = graphHeight + (legendLines.length === 0 ? 0 : Math.ceil(legendLines.length * LABEL_SIZE * LINE + 16));
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="bs-statechart" data-machine="${escapeXml(model.name)}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT}">`,
  );
  out.push(`<!-- ${escapeXml(model.name)}: generated by \`banksync viz\` from the machine definition; do not edit. -->`);
  out.push(`<title>${escapeXml(model.name)} state machine (${escapeXml(model.machineId)})</title>`);
  out.push(
    '<defs>' +
      `<marker id="${prefix}-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#5c677d"/></marker>` +
      '<style>' +
      '.bs-box{fill:#fff;stroke:#495057;stroke-width:1.4px}' +
      '.bs-cluster>.bs-frame{fill:#f4f6f8;stroke:#8d99ae;stroke-width:1.2px}' +
      '.bs-cluster .bs-cluster>.bs-frame{fill:#e9edf1}' +
      '.bs-header{fill:#fff;fill-opacity:0.6;stroke:#ced4da;stroke-width:1px}' +
      '.bs-any>.bs-box{stroke-dasharray:5 4}' +
      '.bs-title{font-size:13px;font-weight:700;fill:#212529}' +
      '.bs-detail{font-size:10.5px;fill:#495057}' +
      '.bs-edge{fill:none;stroke:#5c677d;stroke-width:1.3px}' +
      '.bs-label rect{fill:#fff;fill-opacity:0.9}' +
      '.bs-label text{font-size:10.5px;font-weight:600;fill:#1f2d3d}' +
      '.bs-label .bs-actions{font-weight:400;fill:#6c757d;font-style:italic}' +
      '.bs-legend text{font-size:10.5px;font-weight:600;fill:#1f2d3d}' +
      '.bs-legend .bs-actions{font-weight:400;fill:#6c757d;font-style:italic}' +
      '.bs-legend .bs-no{fill:#e8590c;font-weight:700}' +
      '.bs-initial{fill:#212529}' +
      '.bs-active>.bs-box,.bs-active>.bs-frame{stroke:#e8590c;stroke-width:2.5px}' +
      '.bs-current>.bs-box{fill:#fff4e6;stroke-width:3.5px}' +
      '</style>' +
      '</defs>',
  );
  out.push(`<rect class="bs-background" x="0" y="0" width="${width}" height="${height}" fill="#fff"/>`);

  // Clusters, outermost first.
  const clusterSvg = (s: VizState): string => {
    const r = rectOf(`c:${s.id}`);
    let body = `<rect class="bs-frame" x="${fmt(r.x - r.width / 2)}" y="${fmt(r.y - r.height / 2)}" width="${fmt(r.width)}" height="${fmt(r.height)}" rx="12" ry="12"${s.type === 'parallel' ? ' stroke-dasharray="6 4"' : ''}/>`;
    const h = rectOf(`h:${s.id}`);
    body += `<rect class="bs-header" x="${fmt(h.x - h.width / 2)}" y="${fmt(h.y - h.height / 2)}" width="${fmt(h.width)}" height="${fmt(h.height)}" rx="6" ry="6"/>`;
    body += textBlock(h.x, h.y - h.height / 2 + PAD_Y, stateTitle(s), stateLines(model, s, innerWrap), 'bs-title');
    const nested = s.children.map((id) => model.byId.get(id)!).filter(isComposite).map(clusterSvg).join('');
    return `<g class="bs-cluster" data-state="${escapeXml(s.id)}">${body}${nested}</g>`;
  };
  out.push(`<g class="bs-clusters">${model.root.children.map((id) => model.byId.get(id)!).filter(isComposite).map(clusterSvg).join('')}</g>`);

  // Edges, then their labels on top of everything.
  const edgeSvg: string[] = [];
  const labelSvg: string[] = [];
  for (const e of g.edges()) {
    const data = g.edge(e);
    if (data.invisible) continue;
    let points = data.points ?? [];
    // An edge to/from a composite state from outside it stops at the composite's border, unless that
    // would cut its label off (the path then visibly reaches the composite's title).
    for (const [end, other] of [
      [e.w, e.v],
      [e.v, e.w],
    ] as const) {
      const node = g.node(end);
      if ((node.kind !== 'header' && node.kind !== 'exit') || end === other || within(other, node.stateId)) continue;
      const r = rectOf(`c:${node.stateId}`);
      const labelInside = data.lines.length > 0 && data.x !== undefined && data.y !== undefined && inside({ x: data.x, y: data.y }, r);
      if (labelInside && node.kind === 'header') continue;
      points = end === e.w ? clipEnd(points, r) : clipEnd([...points].reverse(), r).reverse();
    }
    const first = data.transitions[0];
    const attrs = first
      ? ` data-source="${escapeXml(first.source)}" data-target="${escapeXml(g.node(e.w).stateId)}"`
      : ` data-initial="${escapeXml(g.node(e.v).stateId)}"`;
    edgeSvg.push(`<path class="bs-edge"${attrs} d="${splinePath(points)}" marker-end="url(#${prefix}-arrow)"/>`);
    // A compact-legend number has no room of its own in the layout: it sits halfway along its edge.
    const at = data.x !== undefined && data.y !== undefined ? { x: data.x, y: data.y } : points.length > 0 ? halfway(points) : undefined;
    if (data.lines.length > 0 && at !== undefined) {
      const center = at;
      const top = center.y - data.height / 2;
      const boxWidth = data.width || Math.max(...data.lines.map((l: { text: string; actions: boolean }) => textWidth(l.text, LABEL_SIZE, !l.actions))) + 6;
      let label = `<rect x="${fmt(center.x - boxWidth / 2)}" y="${fmt(top)}" width="${fmt(boxWidth)}" height="${fmt(data.height)}" rx="3" ry="3"/>`;
      data.lines.forEach((line: { text: string; actions: boolean }, i: number) => {
        const cls = line.actions ? ' class="bs-actions"' : '';
        label += `<text${cls} x="${fmt(center.x)}" y="${fmt(top + 2 + (i + 1) * LABEL_SIZE * LINE - 3)}" text-anchor="middle">${escapeXml(line.text)}</text>`;
      });
      labelSvg.push(`<g class="bs-label">${label}</g>`);
    }
  }
  out.push(`<g class="bs-edges">${edgeSvg.join('')}</g>`);

  // States.
  const nodeSvg: string[] = [];
  for (const name of g.nodes()) {
    const node = g.node(name);
    const r = rectOf(name);
    const left = r.x - r.width / 2;
    const top = r.y - r.height / 2;
    if (node.kind === 'initial') {
      nodeSvg.push(`<circle class="bs-initial" data-initial-of="${escapeXml(node.stateId)}" cx="${fmt(r.x)}" cy="${fmt(r.y)}" r="${fmt(DOT / 2 - 1)}"/>`);
    } else if (node.kind === 'any') {
      const box = `<rect class="bs-box" x="${fmt(left)}" y="${fmt(top)}" width="${fmt(r.width)}" height="${fmt(r.height)}" rx="8" ry="8"/>`;
      nodeSvg.push(`<g class="bs-any">${box}${textBlock(r.x, top + PAD_Y, `${model.machineId} (any state)`, rootLines, 'bs-title')}</g>`);
    } else if (node.kind === 'state') {
      const s = model.byId.get(node.stateId)!;
      let body: string;
      if (s.type === 'history') {
        body = `<circle class="bs-box" cx="${fmt(r.x)}" cy="${fmt(r.y)}" r="${fmt(r.width / 2)}"/><text class="bs-title" x="${fmt(r.x)}" y="${fmt(r.y + 4.5)}" text-anchor="middle">${stateTitle(s)}</text>`;
      } else {
        body = `<rect class="bs-box" x="${fmt(left)}" y="${fmt(top)}" width="${fmt(r.width)}" height="${fmt(r.height)}" rx="8" ry="8"/>`;
        if (s.type === 'final') {
          body += `<rect class="bs-box bs-inner" x="${fmt(left + 4)}" y="${fmt(top + 4)}" width="${fmt(r.width - 8)}" height="${fmt(r.height - 8)}" rx="5" ry="5"/>`;
        }
        const details = stateLines(model, s, innerWrap);
        body += textBlock(r.x, top + PAD_Y, stateTitle(s), details, 'bs-title');
        if (details.length > 0) {
          const y = top + PAD_Y + TITLE_SIZE * LINE + 3;
          body += `<path d="M${fmt(left + 6)},${fmt(y)}H${fmt(left + r.width - 6)}" stroke="#ced4da" stroke-width="1"/>`;
        }
      }
      const kind = `${s.type === 'final' ? ' bs-final' : ''}${s.collapsed ? ' bs-collapsed' : ''}`;
      const data = s.outside === undefined ? `data-state="${escapeXml(s.id)}"` : `data-outside="${escapeXml(s.outside)}"`;
      nodeSvg.push(`<g class="bs-state${kind}" ${data}>${body}</g>`);
    }
  }
  out.push(`<g class="bs-nodes">${nodeSvg.join('')}</g>`);
  out.push(`<g class="bs-labels">${labelSvg.join('')}</g>`);
  if (legendLines.length > 0) {
    const rows = legendLines.map((line, i) => {
      const y = fmt(graphHeight + (i + 1) * LABEL_SIZE * LINE);
      const no = line.no === undefined ? '' : `<text class="bs-no" x="16" y="${y}">${escapeXml(line.no)}</text>`;
      return `${no}<text${line.actions ? ' class="bs-actions"' : ''} x="${16 + LEGEND_INDENT}" y="${y}">${escapeXml(line.text)}</text>`;
    });
    out.push(`<g class="bs-legend">${rows.join('')}</g>`);
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Marks states in a generated SVG: every id in `activeIds` gets class `bs-active` (drawn with an orange
 * border), the innermost (`currentId`) also `bs-current` (filled). Returns a new string.
 */
export function highlightSvgStates(svg: string, activeIds: readonly string[], currentId?: string): string {
  let out = svg;
  for (const id of activeIds) {
    const extra = id === currentId ? ' bs-active bs-current' : ' bs-active';
    const pattern = new RegExp(`class="(bs-(?:state|cluster)(?: bs-final)?(?: bs-collapsed)?)" data-state="${escapeRegex(escapeXml(id))}"`, 'g');
    out = out.replace(pattern, (_m, cls: string) => `class="${cls}${extra}" data-state="${escapeXml(id)}"`);
  }
  return out;
}
