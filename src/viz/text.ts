/**
 * Text helpers for the offline SVG renderer: XML escaping and a deterministic text-width estimate.
 * No font is measured (there is no browser): widths come from a fixed table of Helvetica/Arial advance
 * widths (in em), rounded up a little, so boxes fit in any common sans-serif font and output never depends
 * on the machine that generates it.
 */

export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

const NARROW = new Set([...'ijl|!.,:;\'']);
const SEMI_NARROW = new Set([...'ftrI[]()/\\- "`']);
const WIDE = new Set([...'mwMW@%']);

function charEm(ch: string, bold: boolean): number {
  if (NARROW.has(ch)) return bold ? 0.3 : 0.25;
  if (SEMI_NARROW.has(ch)) return bold ? 0.38 : 0.34;
  if (WIDE.has(ch)) return bold ? 0.95 : 0.88;
  if (/[A-Z]/.test(ch)) return bold ? 0.74 : 0.69;
  if (/[0-9]/.test(ch)) return 0.58;
  if (/[a-z]/.test(ch)) return bold ? 0.6 : 0.54;
  if (ch === '_' || ch === '*' || ch === '=' || ch === '+' || ch === '<' || ch === '>') return 0.6;
  return bold ? 0.75 : 0.7; // anything else (unicode, symbols): generous
}

/** Estimated width in px of `text` at `fontSize` px. */
export function textWidth(text: string, fontSize: number, bold = false): number {
  let em = 0;
  for (const ch of text) em += charEm(ch, bold);
  return Math.ceil(em * fontSize * 1.04);
}

/** A number for SVG output: one decimal, no `-0`, no trailing `.0`. */
export function fmt(n: number): string {
  const v = Math.round(n * 10) / 10;
  return Object.is(v, -0) ? '0' : String(v);
}
