import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterEach, describe, expect, it } from 'vitest';
import { createMachine } from 'xstate';
import { machines } from '../../machines/index.js';
import { registerViz } from '../../src/cli/commands/viz.js';
import {
  DEFAULT_VIZ_DIR,
  buildModel,
  generateVisualizations,
  highlightSvg,
  machineViews,
  toSvg,
  renderMachine,
  toStatelyConfig,
  writeVisualizations,
  type VizModel,
} from '../../src/viz/index.js';
import { clean, edgeText, mermaidIds } from '../../src/viz/mermaid.js';

const temps: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'banksync-viz-'));
  temps.push(dir);
  return dir;
}
afterEach(async () => {
  await Promise.all(temps.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

function unescapeXml(text: string): string {
  return text
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&');
}

/** Parse-ish well-formedness: balanced tags, quoted attributes, no stray `<`/`&` in text. */
function checkWellFormed(svg: string): void {
  const body = svg.replace(/<!--[\s\S]*?-->/g, '');
  const stack: string[] = [];
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  for (let m = tag.exec(body); m; m = tag.exec(body)) {
    const text = body.slice(last, m.index);
    expect(text, `text before <${m[2]}>`).not.toMatch(/<|&(?!(amp|lt|gt|quot|#39);)/);
    last = tag.lastIndex;
    const [, closing, name, , selfClosing] = m;
    if (closing) expect(stack.pop(), `closing </${name}>`).toBe(name);
    else if (!selfClosing) stack.push(name!);
  }
  expect(body.slice(last).trim()).toBe('');
  expect(stack).toEqual([]);
}

function svgTexts(svg: string): string[] {
  return [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => unescapeXml(m[1]!));
}

describe('visualizations/ (regenerate with `banksync viz` when a machine changes)', () => {
  it('the committed files are identical to freshly generated ones', async () => {
    const dir = await tempDir();
    const report = await writeVisualizations(dir);
    expect(report.stale.length).toBe(generateVisualizations().size);
    const committed = await readdir(DEFAULT_VIZ_DIR).catch(() => [] as string[]);
    for (const file of await readdir(dir)) {
      expect(committed, `visualizations/${file} is missing: run \`banksync viz\``).toContain(file);
      const fresh = await readFile(join(dir, file), 'utf8');
      const current = await readFile(join(DEFAULT_VIZ_DIR, file), 'utf8');
      expect(current === fresh, `visualizations/${file} is out of date with its machine: run \`banksync viz\``).toBe(true);
    }
    const check = await writeVisualizations(DEFAULT_VIZ_DIR, { check: true });
    expect(check.orphans, 'generated files of machines no longer registered').toEqual([]);
    expect(check.stale).toEqual([]);
  });

  it('is deterministic: the same machine gives byte-identical files', () => {
    const a = generateVisualizations();
    const b = generateVisualizations();
    expect([...a.keys()]).toEqual([...b.keys()]);
    for (const [file, content] of a) expect(b.get(file) === content, file).toBe(true);
  });
});

describe.each(Object.entries(machines))('machine %s', (name, machine) => {
  const model: VizModel = buildModel(name, machine);
  const files = renderMachine(name, machine);
  const mmd = files[`${name}.mmd`]!;
  // The full diagram (the viewer and console highlight it); the committed files are its views.
  const svg = toSvg(model);
  const views = machineViews(model).map((v) => ({ name: v.name, svg: files[`${v.name}.svg`]! }));

  it('has states and transitions to draw', () => {
    expect(model.states.length).toBeGreaterThan(0);
    expect(model.transitions.length).toBeGreaterThan(0);
  });

  it('Mermaid: every state and every transition (with its label) appears', () => {
    expect(mmd.startsWith('stateDiagram-v2\n')).toBe(true);
    const { ids, anyStateId } = mermaidIds(model);
    for (const s of model.states) {
      expect(mmd, `state ${s.id}`).toContain(s.key);
      expect(mmd).toMatch(new RegExp(`(^|\\s)${ids.get(s.id)}(\\s|$)`, 'm'));
    }
    for (const t of model.transitions) {
      expect(mmd, `label of ${t.source} ${t.eventType}`).toContain(clean(t.label));
      const from = t.source === model.root.id ? anyStateId : ids.get(t.source)!;
      for (const target of t.targets.length > 0 ? t.targets : [t.source]) {
        const to = target === model.root.id ? anyStateId : ids.get(target)!;
        expect(mmd).toContain(`${from} --> ${to} : ${clean(edgeText(t))}`);
      }
    }
    for (const s of [model.root, ...model.states]) {
      if (s.initial) expect(mmd).toContain(`[*] --> ${ids.get(s.initial)}`);
      if (s.type === 'final') expect(mmd).toContain(`${ids.get(s.id)} --> [*]`);
    }
  });

  it('Mermaid: guards, delays and invoked actors are labelled by name', () => {
    for (const t of model.transitions) {
      if (t.guard) expect(mmd).toContain(clean(`[${t.guard}]`));
      if (t.kind === 'after') expect(mmd).toContain(`after ${String(t.delay)}`);
      if (t.invoke) expect(mmd).toContain(`${t.kind === 'done.invoke' ? 'done' : 'error'} ${t.invoke.src}`);
    }
  });

  it('SVG: well-formed, every state name and every transition trigger/guard in a <text>', () => {
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    checkWellFormed(svg);
    const texts = svgTexts(svg);
    for (const s of model.states) {
      if (s.type === 'history') continue;
      expect(
        texts.some((t) => t === s.key || t.startsWith(`${s.key} (`)),
        `state ${s.id} has a <text>`,
      ).toBe(true);
      expect(svg).toContain(`data-state="${s.id}"`);
    }
    for (const t of model.transitions) {
      expect(texts.some((x) => x.includes(t.trigger)), `trigger ${t.trigger}`).toBe(true);
      if (t.guard) expect(texts.some((x) => x.includes(`[${t.guard}]`)), `guard ${t.guard}`).toBe(true);
    }
    const dims = /width="(\d+)" height="(\d+)" viewBox="0 0 (\d+) (\d+)"/.exec(svg);
    expect(dims).not.toBeNull();
    expect(Number(dims![1])).toBeGreaterThan(50);
    expect(dims![1]).toBe(dims![3]);
    expect(svg).not.toMatch(/NaN|undefined|Infinity/);
  });

  it('views: an overview plus one SVG per composite state, together naming every state and transition', () => {
    expect(views.map((v) => v.name)).toEqual([name, ...model.states.filter((s) => s.children.length > 0).map((s) => `${name}.${s.path.join('.')}`)]);
    for (const v of views) {
      expect(v.svg, `${v.name}.svg`).toBeDefined();
      checkWellFormed(v.svg);
      expect(v.svg).not.toMatch(/NaN|undefined|Infinity/);
    }
    const texts = views.flatMap((v) => svgTexts(v.svg));
    const all = views.map((v) => v.svg).join('\n');
    for (const s of model.states) {
      if (s.type === 'history') continue;
      expect(texts.some((t) => t === s.key || t.startsWith(`${s.key} (`)), `state ${s.id} has a <text>`).toBe(true);
      expect(all).toContain(`data-state="${s.id}"`);
    }
    for (const t of model.transitions) {
      expect(texts.some((x) => x.includes(t.trigger)), `trigger ${t.trigger}`).toBe(true);
      if (t.guard) expect(texts.some((x) => x.includes(`[${t.guard}]`)), `guard ${t.guard}`).toBe(true);
    }
    // The overview draws no state below the top level: composite states are one box each.
    const overview = views[0]!.svg;
    for (const s of model.states) if (s.path.length > 1) expect(overview).not.toContain(`data-state="${s.id}"`);
    for (const s of model.states.filter((x) => x.path.length === 1 && x.children.length > 0)) {
      expect(overview).toMatch(new RegExp(`class="bs-state bs-collapsed" data-state="${s.id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"`));
    }
  });

  it('Stately export: a createMachine({...}) snippet that rebuilds the same statechart', () => {
    const source = files[`${name}.stately.ts`]!;
    expect(source).toContain("import { createMachine } from 'xstate';");
    const match = /^export const (\w+) = createMachine\(/m.exec(source);
    expect(match).not.toBeNull();
    // Evaluate the snippet as Stately would read it: the object literal passed to createMachine.
    const body = source.slice(source.indexOf('createMachine(', match!.index) + 'createMachine('.length, source.lastIndexOf(');'));
    const config = new Function(`return (${body});`)() as Record<string, unknown>;
    expect(config).toEqual(toStatelyConfig(model));
    const rebuilt = buildModel(name, createMachine(config as never));
    const shape = (m: VizModel) => ({
      states: m.states.map((s) => ({ id: s.id, type: s.type, initial: s.initial, entry: s.entry, exit: s.exit, invoke: s.invoke })),
      transitions: m.transitions.map((t) => ({
        source: t.source,
        targets: t.targets,
        label: t.label,
        actions: t.actions,
        reenter: t.reenter,
      })),
    });
    expect(shape(rebuilt)).toEqual(shape(model));
  });
});

describe('highlightSvg', () => {
  it('marks the current state and its ancestors, from a dotted name or a state value', () => {
    const model = buildModel('synchronization', machines.synchronization!);
    const waiting = model.states.find((s) => s.path.join('.') === 'RUNNING.Waiting')!;
    const running = model.states.find((s) => s.path.join('.') === 'RUNNING')!;
    for (const value of ['RUNNING.Waiting', { RUNNING: 'Waiting' }]) {
      const svg = highlightSvg('synchronization', value);
      expect(svg).toContain(`class="bs-state bs-active bs-current" data-state="${waiting.id}"`);
      expect(svg).toContain(`class="bs-cluster bs-active" data-state="${running.id}"`);
      expect(svg.match(/class="[^"]*bs-active/g)!.length).toBe(2);
    }
    const done = highlightSvg('synchronization', 'COMPLETED');
    expect(done).toMatch(/class="bs-state bs-final bs-active bs-current" data-state="[^"]*COMPLETED"/);
    expect(highlightSvg('synchronization', 'NO_SUCH_STATE')).toBe(toSvg(buildModel('synchronization', machines.synchronization!)));
    expect(() => highlightSvg('no-such-machine', 'X')).toThrow(/unknown machine/);
  });
});

describe('banksync viz', () => {
  async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
    const program = new Command().exitOverride();
    registerViz(program);
    let out = '';
    let err = '';
    const write = (sink: 'out' | 'err') => (chunk: string | Uint8Array) => {
      if (sink === 'out') out += String(chunk);
      else err += String(chunk);
      return true;
    };
    const saved = { out: process.stdout.write, err: process.stderr.write, code: process.exitCode };
    process.stdout.write = write('out') as typeof process.stdout.write;
    process.stderr.write = write('err') as typeof process.stderr.write;
    process.exitCode = undefined;
    try {
      await program.parseAsync(['viz', ...args], { from: 'user' });
      return { code: Number(process.exitCode ?? 0), out, err };
    } finally {
      process.stdout.write = saved.out;
      process.stderr.write = saved.err;
      process.exitCode = saved.code;
    }
  }

  it('--check lists stale files and exits 1 without writing; then writes; then --check passes', async () => {
    const dir = await tempDir();
    const stale = await run(['--out', dir, '--check']);
    expect(stale.code).toBe(1);
    expect(stale.err).toContain('synchronization.svg');
    expect(await readdir(dir)).toEqual([]);

    const written = await run(['--out', dir]);
    expect(written.code).toBe(0);
    expect((await readdir(dir)).sort()).toEqual([...generateVisualizations().keys()].sort());

    const fresh = await run(['--out', dir, '--check']);
    expect(fresh.code).toBe(0);
    expect(fresh.out).toContain('up to date');
  });
});
