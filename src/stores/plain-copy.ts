/**
 * Deep copies for the in-memory store, without the cost of a JSON round trip or `structuredClone` (both
 * serialise the whole value; on the engine's small plain records a direct walk is several times faster).
 *
 * - `jsonCopy(value)` equals `JSON.parse(JSON.stringify(value ?? null))` (what a JSON column holds):
 *   undefined, function and symbol members are dropped (null inside arrays), non-finite numbers become null,
 *   -0 becomes 0. It throws exactly as JSON.stringify does (a cycle, a BigInt).
 * - `plainCopy(value)` equals `structuredClone(value)` for the store's records, except that an object reached
 *   twice is copied twice (no record the store keeps shares one: each is built or JSON-normalised on write).
 *
 * Both walk only plain data: arrays and objects whose prototype is Object.prototype or null. Anything else
 * (a Date, a Map, a class instance, a `toJSON` method, a `__proto__` key, a cycle or very deep nesting)
 * makes the whole value go through the reference implementation instead, so the result is always the same.
 */

const MAX_DEPTH = 100;

/** Raised inside a walk when the value is not plain data: the caller falls back to the reference copy. */
class NotPlain {}
const NOT_PLAIN = new NotPlain();

const dropped = (value: unknown): boolean => value === undefined || typeof value === 'function' || typeof value === 'symbol';

function plainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function jsonWalk(value: unknown, depth: number): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      return Number.isFinite(value) ? (value === 0 ? 0 : value) : null;
    case 'object': {
      if (value === null) return null;
      if (depth > MAX_DEPTH) throw NOT_PLAIN;
      if (Array.isArray(value)) {
        if (!plainArray(value)) throw NOT_PLAIN;
        const out = new Array<unknown>(value.length);
        for (let i = 0; i < value.length; i++) {
          const item: unknown = value[i];
          out[i] = dropped(item) ? null : jsonWalk(item, depth + 1);
        }
        return out;
      }
      if (!plainObject(value) || typeof (value as { toJSON?: unknown }).toJSON === 'function') throw NOT_PLAIN;
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(value)) {
        const item = (value as Record<string, unknown>)[key];
        if (dropped(item)) continue;
        if (key === '__proto__') throw NOT_PLAIN;
        out[key] = jsonWalk(item, depth + 1);
      }
      return out;
    }
    default:
      throw NOT_PLAIN;
  }
}

function plainArray(value: unknown[]): boolean {
  return Object.getPrototypeOf(value) === Array.prototype && typeof (value as { toJSON?: unknown }).toJSON !== 'function';
}

function plainWalk(value: unknown, depth: number): unknown {
  if (typeof value !== 'object' || value === null) {
    if (typeof value === 'function' || typeof value === 'symbol') throw NOT_PLAIN;
    return value;
  }
  if (depth > MAX_DEPTH) throw NOT_PLAIN;
  if (Array.isArray(value)) {
    // Holes and extra (non-index) properties: left to structuredClone.
    if (Object.getPrototypeOf(value) !== Array.prototype || Object.keys(value).length !== value.length) throw NOT_PLAIN;
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) out[i] = plainWalk(value[i], depth + 1);
    return out;
  }
  if (!plainObject(value)) throw NOT_PLAIN;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    if (key === '__proto__') throw NOT_PLAIN;
    out[key] = plainWalk((value as Record<string, unknown>)[key], depth + 1);
  }
  return out;
}

/** `JSON.parse(JSON.stringify(value ?? null))`, fast for plain data. */
export function jsonCopy(value: unknown): unknown {
  if (value === undefined || value === null) return null;
  try {
    return jsonWalk(value, 0);
  } catch (error) {
    if (error !== NOT_PLAIN) throw error;
    const text = JSON.stringify(value);
    return text === undefined ? null : (JSON.parse(text) as unknown);
  }
}

/** `structuredClone(value)`, fast for plain data (objects, arrays, primitives). */
export function plainCopy<T>(value: T): T {
  try {
    return plainWalk(value, 0) as T;
  } catch (error) {
    if (error !== NOT_PLAIN) throw error;
    return structuredClone(value);
  }
}
