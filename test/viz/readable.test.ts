/**
 * Every committed diagram is readable at README width: scaled to 800 px wide, no text is smaller than 10 px.
 * The font size of each <text> comes from the SVG's own stylesheet (its classes, or its group's class).
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { machines } from '../../machines/index.js';
import { DEFAULT_VIZ_DIR, MIN_README_FONT_PX, README_WIDTH, buildModel, toSvg } from '../../src/viz/index.js';

/** The font size (px) of every <text> element, and the SVG's viewBox width. */
function textSizes(svg: string): { viewBoxWidth: number; sizes: Array<{ text: string; size: number | null }> } {
  const viewBox = /<svg[^>]*\sviewBox="([-\d.]+) ([-\d.]+) ([\d.]+) ([\d.]+)"/.exec(svg);
  if (!viewBox) throw new Error('no viewBox on the <svg> element');
  const rules: Array<{ selector: string; size: number }> = [];
  for (const style of svg.matchAll(/<style>([\s\S]*?)<\/style>/g)) {
    for (const rule of style[1]!.matchAll(/([^{}]+)\{([^}]*)\}/g)) {
      const size = /font-size:\s*([\d.]+)px/.exec(rule[2]!);
      if (size) for (const selector of rule[1]!.split(',')) rules.push({ selector: selector.trim(), size: Number(size[1]) });
    }
  }
  const rootSize = /<svg[^>]*\sfont-size="([\d.]+)"/.exec(svg);
  const sizes: Array<{ text: string; size: number | null }> = [];
  const stack: string[][] = [];
  const tags = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"]*")*)\s*(\/?)>([^<]*)/g;
  for (let m = tags.exec(svg); m; m = tags.exec(svg)) {
    const [, closing, name, attrs, selfClosing, after] = m;
    if (closing) {
      stack.pop();
      continue;
    }
    const classes = /\sclass="([^"]*)"/.exec(attrs!)?.[1]?.split(/\s+/) ?? [];
    if (name === 'text') {
      const own = /\sfont-size="([\d.]+)"/.exec(attrs!);
      const ancestors = stack.flat();
      // A rule applies when its last compound selects this element and every earlier class is an ancestor's.
      const applies = (selector: string): boolean => {
        const parts = selector.split(/\s+/);
        const last = parts.pop()!;
        const lastOk = last === 'text' || (last.startsWith('.') && classes.includes(last.slice(1)));
        return lastOk && parts.every((p) => p.startsWith('.') && ancestors.includes(p.slice(1).replace(/>.*$/, '')));
      };
      const matched = rules.filter((r) => !r.selector.includes('>') && applies(r.selector)).map((r) => r.size);
      const size = own ? Number(own[1]) : matched.length > 0 ? Math.min(...matched) : rootSize ? Number(rootSize[1]) : null;
      sizes.push({ text: after ?? '', size });
    }
    if (!selfClosing) stack.push(classes);
  }
  return { viewBoxWidth: Number(viewBox[3]), sizes };
}

/** Texts smaller than MIN_README_FONT_PX when the SVG is scaled to README_WIDTH (or without a font size). */
function unreadable(svg: string): string[] {
  const { viewBoxWidth, sizes } = textSizes(svg);
  return sizes
    .filter(({ size }) => size === null || (size * README_WIDTH) / viewBoxWidth < MIN_README_FONT_PX)
    .map(({ text, size }) => `${JSON.stringify(text)} at ${size === null ? '?' : ((size * README_WIDTH) / viewBoxWidth).toFixed(1)} px`);
}

describe('committed diagrams are readable at README width', async () => {
  const files = (await readdir(DEFAULT_VIZ_DIR)).filter((f) => f.endsWith('.svg')).sort();

  it('there are committed diagrams, each with text', async () => {
    expect(files.length).toBeGreaterThanOrEqual(Object.keys(machines).length);
    for (const file of files) expect(textSizes(await readFile(join(DEFAULT_VIZ_DIR, file), 'utf8')).sizes.length, file).toBeGreaterThan(0);
  });

  it.each(files)('%s: every text label is >= 10 px when the SVG is 800 px wide', async (file) => {
    const svg = await readFile(join(DEFAULT_VIZ_DIR, file), 'utf8');
    const { sizes } = textSizes(svg);
    expect(sizes.every((s) => s.size !== null), 'every <text> has a font size').toBe(true);
    expect(unreadable(svg), `${file} at ${README_WIDTH} px`).toEqual([]);
  });

  it('the check fails on the full synchronization diagram (the one committed before per-state views)', () => {
    const full = toSvg(buildModel('synchronization', machines.synchronization!));
    const bad = unreadable(full);
    expect(bad.length).toBeGreaterThan(0);
    expect(bad.length).toBe(textSizes(full).sizes.length);
  });

  it('the parser reads sizes from classes, group rules and attributes', () => {
    const svg =
      '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1600 100"><defs><style>.a{font-size:20px}.g text{font-size:30px}</style></defs>' +
      '<text class="a">A</text><g class="g"><text>B</text></g><text font-size="12">C</text><text>D</text></svg>';
    expect(textSizes(svg).sizes).toEqual([
      { text: 'A', size: 20 },
      { text: 'B', size: 30 },
      { text: 'C', size: 12 },
      { text: 'D', size: null },
    ]);
    expect(unreadable(svg)).toEqual(['"C" at 6.0 px', '"D" at ? px']);
  });
});
