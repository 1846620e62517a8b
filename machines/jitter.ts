/**
 * Deterministic jitter for pure machines: a fraction in [0, 1) derived from a key (sync id and attempt), so
 * retries of many syncs after one provider outage spread out, while replaying a sync gives the same delays.
 */
export function jitterFraction(key: string): number {
  // FNV-1a, 32 bit: cheap, well spread for short keys, no dependency.
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) / 0x1_0000_0000;
}

/** `delayMs` shortened by up to `ratio` of itself ("equal jitter" for ratio 0.5): never longer than asked. */
export function withJitter(delayMs: number, ratio: number, key: string): number {
  if (ratio <= 0 || delayMs <= 0) return delayMs;
  return Math.round(delayMs * (1 - Math.min(1, ratio) * jitterFraction(key)));
}
