/**
 * Generators of hostile inputs shared by the security suites: random JSON, non-JSON text, huge bodies, and
 * near-valid mutations of real bodies (structural JSON mutations and text-level damage).
 */
import fc from 'fast-check';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export type JsonOp = 'delete' | 'replace' | 'retype' | 'enum' | 'empty' | 'nest' | 'number-edge' | 'duplicate-key';

export interface JsonMutation {
  /** Which child to descend into at each level (index modulo the number of children). */
  path: number[];
  op: JsonOp;
  value: unknown;
}

const ENUM_NOISE = ['PAUSED_BY_BANK', 'COMPLETED ', 'completed', 'SUCCESS', 'DONE', 'WAITING_FOR_BANK', 'ARCHIVED', '', '\u0000', 'COMPLETED\u200b'];
const NUMBER_EDGES = [0, -1, 1e308, -1e308, 2 ** 53 + 1, 0.5, -0];

function clone<T>(value: T): T {
  const text = JSON.stringify(value);
  return (text === undefined ? null : JSON.parse(text)) as T;
}

function children(node: Json): [string | number, Json][] {
  if (Array.isArray(node)) return node.map((v, i) => [i, v]);
  if (node && typeof node === 'object') return Object.entries(node);
  return [];
}

/** Applies one structural mutation to a JSON value (returns a new value). */
export function mutateJson(base: unknown, mutation: JsonMutation): unknown {
  const root = { root: clone(base) as Json } as { root: Json };
  let parent: Record<string, Json> | Json[] = root as unknown as Record<string, Json>;
  let key: string | number = 'root';
  for (const step of mutation.path) {
    const node = (parent as Record<string, Json>)[key as string] as Json;
    const kids = children(node);
    if (kids.length === 0) break;
    const [k] = kids[step % kids.length]!;
    parent = node as Record<string, Json>;
    key = k;
  }
  const target = parent as Record<string | number, Json>;
  const current = target[key];
  switch (mutation.op) {
    case 'delete':
      if (Array.isArray(target)) target.splice(key as number, 1);
      else delete target[key];
      break;
    case 'replace':
      target[key] = mutation.value as Json;
      break;
    case 'retype':
      target[key] = (typeof current === 'string' ? 42 : typeof current === 'number' ? String(current) : Array.isArray(current) ? {} : current && typeof current === 'object' ? [] : 'x') as Json;
      break;
    case 'enum':
      target[key] = ENUM_NOISE[Math.abs(Number(JSON.stringify(mutation.value)?.length ?? 0)) % ENUM_NOISE.length]!;
      break;
    case 'empty':
      target[key] = (typeof current === 'string' ? '' : Array.isArray(current) ? [] : current && typeof current === 'object' ? {} : null) as Json;
      break;
    case 'nest':
      target[key] = { value: current ?? null, extra: mutation.value as Json } as Json;
      break;
    case 'number-edge':
      target[key] = NUMBER_EDGES[(JSON.stringify(mutation.value)?.length ?? 0) % NUMBER_EDGES.length]!;
      break;
    case 'duplicate-key':
      // Handled at the text level by the caller (JSON objects cannot hold duplicate keys).
      break;
  }
  return root.root;
}

export const jsonMutation: fc.Arbitrary<JsonMutation> = fc.record({
  path: fc.array(fc.nat(), { maxLength: 6 }),
  op: fc.constantFrom<JsonOp>('delete', 'replace', 'retype', 'enum', 'empty', 'nest', 'number-edge', 'duplicate-key'),
  value: fc.jsonValue({ maxDepth: 2 }),
});

/** Structural mutations of real bodies, serialised (with an occasional duplicated key that overrides a field). */
export function nearValidJson(bases: readonly unknown[]): fc.Arbitrary<string> {
  return fc
    .record({ base: fc.constantFrom(...bases), mutations: fc.array(jsonMutation, { minLength: 1, maxLength: 3 }), dup: fc.boolean(), dupValue: fc.jsonValue({ maxDepth: 1 }) })
    .map(({ base, mutations, dup, dupValue }) => {
      const mutated = mutations.reduce<unknown>((value, m) => mutateJson(value, m), base);
      const text = JSON.stringify(mutated) ?? 'null';
      if (!dup || !text.startsWith('{"')) return text;
      // A second occurrence of the first key: JSON.parse keeps the last one.
      const firstKey = /^\{("(?:[^"\\]|\\.)*")/.exec(text)?.[1];
      return firstKey ? `${text.slice(0, -1)}${text.length > 2 ? ',' : ''}${firstKey}:${JSON.stringify(dupValue)}}` : text;
    });
}

/** Text-level damage of real bodies: truncation, inserted bytes, a flipped character. */
export function damagedText(bases: readonly string[]): fc.Arbitrary<string> {
  return fc
    .record({ base: fc.constantFrom(...bases), op: fc.constantFrom('truncate', 'insert', 'flip', 'bom', 'trailing'), at: fc.nat(), insert: fc.string({ minLength: 1, maxLength: 4, unit: 'binary' }) })
    .map(({ base, op, at, insert }) => {
      const i = base.length === 0 ? 0 : at % base.length;
      switch (op) {
        case 'truncate':
          return base.slice(0, i);
        case 'insert':
          return `${base.slice(0, i)}${insert}${base.slice(i)}`;
        case 'flip':
          return `${base.slice(0, i)}${String.fromCharCode(base.charCodeAt(i) ^ (1 << (at % 7)))}${base.slice(i + 1)}`;
        case 'bom':
          return `\ufeff${base}`;
        default:
          return `${base}${insert}`;
      }
    });
}

/** A few huge bodies, built once (a 2 MB string, deep nesting, a valid-looking body with a huge field...). */
export function hugeBodies(bases: readonly string[]): string[] {
  const big = 'A'.repeat(2 * 1024 * 1024);
  const out = [big, '['.repeat(50_000) + ']'.repeat(50_000), '{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000), JSON.stringify({ pad: big })];
  const first = bases[0];
  if (first && first.startsWith('{')) out.push(`{"padding":"${'x'.repeat(1024 * 1024)}",${first.slice(1)}`);
  return out;
}

/** Every kind of hostile webhook body, weighted towards near-valid ones. */
export function webhookBodies(realBodies: readonly string[], extra: fc.Arbitrary<string>[] = [], options: { huge?: boolean } = {}): fc.Arbitrary<string> {
  const parsed = realBodies.flatMap((b) => {
    try {
      return [JSON.parse(b) as unknown];
    } catch {
      return [];
    }
  });
  const texts = realBodies.length > 0 ? realBodies : ['{}'];
  const huge = hugeBodies(texts);
  return fc.oneof(
    { weight: 12, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v) ?? 'null') },
    { weight: 4, arbitrary: fc.anything({ withNullPrototype: true, withObjectString: true }).map((v) => safeStringify(v)) },
    { weight: 8, arbitrary: fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom('', ' ', 'null', 'true', '[]', '{}', '{"', 'undefined', 'NaN', '<xml/>', '\u0000')) },
    { weight: 24, arbitrary: parsed.length > 0 ? nearValidJson(parsed) : fc.jsonValue().map((v) => JSON.stringify(v) ?? 'null') },
    { weight: 8, arbitrary: damagedText(texts) },
    ...(options.huge === false ? [] : [{ weight: 1, arbitrary: fc.constantFrom(...huge) }]),
    ...extra.map((arbitrary) => ({ weight: 4, arbitrary })),
  );
}

function safeStringify(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Content types a delivery may claim. */
export const contentTypes = fc.oneof(
  { weight: 6, arbitrary: fc.constant<string | undefined>('application/json') },
  { weight: 1, arbitrary: fc.constantFrom<string | undefined>(undefined, 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1', 'application/vnd.api+json', '') },
  { weight: 1, arbitrary: fc.string() },
);
