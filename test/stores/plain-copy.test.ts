import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { jsonCopy, plainCopy } from '../../src/stores/plain-copy.js';

const reference = (value: unknown): unknown => {
  if (value === undefined || value === null) return null;
  const text = JSON.stringify(value);
  return text === undefined ? null : JSON.parse(text);
};

const leaf = fc.oneof(
  fc.constantFrom(-0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, undefined, null),
  fc.double(),
  fc.integer(),
  fc.string(),
  fc.boolean(),
);
const withoutPrototype = (entries: Record<string, unknown>) => Object.assign(Object.create(null) as object, entries);
/** Plain data (what the store mostly sees), with -0, NaN, infinities, undefined members, holes, null prototypes. */
const { plain } = fc.letrec((tie) => ({
  plain: fc.oneof(
    { depthSize: 'small' },
    leaf,
    fc.array(tie('plain'), { maxLength: 5 }),
    fc.sparseArray(tie('plain'), { maxLength: 5 }),
    fc.dictionary(fc.string(), tie('plain'), { maxKeys: 5 }),
    fc.dictionary(fc.string(), tie('plain'), { maxKeys: 3 }).map(withoutPrototype),
  ),
}));
/** Values with everything JSON and structuredClone treat specially (Dates, Maps, boxed values, typed arrays...). */
const exoticOnly = fc.anything({
  withBoxedValues: true,
  withDate: true,
  withMap: true,
  withSet: true,
  withNullPrototype: true,
  withSparseArray: true,
  withTypedArray: true,
  withObjectString: true,
  maxDepth: 4,
});
const exotic = fc.oneof(plain, plain, exoticOnly);

describe('jsonCopy', () => {
  it('equals a JSON round trip for any value', () => {
    fc.assert(
      fc.property(exotic, (value) => {
        expect(jsonCopy(value)).toStrictEqual(reference(value));
      }),
      { numRuns: 500 },
    );
  });

  it('normalises what JSON cannot hold, as a JSON column would', () => {
    const when = new Date(0);
    const value = { a: undefined, b: [undefined, () => 1, Number.NaN, -0, Infinity], c: when, d: Symbol('s'), e: { toJSON: () => 'custom' } };
    expect(jsonCopy(value)).toStrictEqual({ b: [null, null, null, 0, null], c: when.toISOString(), e: 'custom' });
    expect(Object.is((jsonCopy({ z: -0 }) as { z: number }).z, 0)).toBe(true);
    expect(jsonCopy(undefined)).toBeNull();
  });

  it('keeps a "__proto__" key as data, never as a prototype', () => {
    const value = JSON.parse('{"__proto__": {"polluted": true}, "x": 1}') as Record<string, unknown>;
    const copy = jsonCopy(value) as Record<string, unknown>;
    expect(Object.getPrototypeOf(copy)).toBe(Object.prototype);
    expect(Object.keys(copy)).toEqual(['__proto__', 'x']);
    expect((copy as { polluted?: boolean }).polluted).toBeUndefined();
  });

  it('throws where JSON.stringify throws (cycles, BigInt)', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    expect(() => jsonCopy(cyclic)).toThrow(TypeError);
    expect(() => jsonCopy({ n: 1n })).toThrow(TypeError);
  });

  it('shares nothing with its input', () => {
    const value = { a: { b: [{ c: 1 }] } };
    const copy = jsonCopy(value) as typeof value;
    copy.a.b[0]!.c = 2;
    expect(value.a.b[0]!.c).toBe(1);
  });
});

describe('plainCopy', () => {
  it('equals structuredClone for any cloneable value', () => {
    fc.assert(
      fc.property(exotic, (value) => {
        expect(plainCopy(value)).toStrictEqual(structuredClone(value));
      }),
      { numRuns: 500 },
    );
  });

  it('keeps what structuredClone keeps (undefined, NaN, -0, holes, BigInt)', () => {
    // eslint-disable-next-line no-sparse-arrays
    const value = { a: undefined, b: [1, , 3], n: Number.NaN, z: -0, big: 10n };
    const copy = plainCopy(value);
    expect(copy).toStrictEqual(structuredClone(value));
    expect(Object.is(copy.z, -0)).toBe(true);
    expect(1 in copy.b).toBe(false);
  });

  it('throws where structuredClone throws (functions, symbols)', () => {
    expect(() => plainCopy({ f: () => 1 })).toThrow(/could not be cloned/);
    expect(() => plainCopy({ s: Symbol('s') })).toThrow(/could not be cloned/);
  });

  it('copies cycles as structuredClone does', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const copy = plainCopy(cyclic);
    expect(copy.self).toBe(copy);
    expect(copy).not.toBe(cyclic);
  });

  it('shares nothing with its input', () => {
    const value = { a: { b: [{ c: 1 }] } };
    const copy = plainCopy(value);
    copy.a.b[0]!.c = 2;
    expect(value.a.b[0]!.c).toBe(1);
  });
});
