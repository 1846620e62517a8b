/** Per-connection counters and their totals, the shape every sandbox family reports in `stats()`. */

/** Copies each connection's counters under its id and sums the numeric ones into `totals` (which it extends). */
export function collectStats<S extends Record<string, number | string>, T extends Record<string, number>>(
  connections: Iterable<{ id: string | number; stats: S }>,
  totals: T,
): { totals: T & Record<string, number>; connections: Record<string, S> } {
  const out: Record<string, S> = {};
  const sums: Record<string, number> = { ...totals };
  for (const c of connections) {
    out[String(c.id)] = { ...c.stats };
    for (const [name, value] of Object.entries(c.stats)) if (typeof value === 'number') sums[name] = (sums[name] ?? 0) + value;
  }
  return { totals: sums as T & Record<string, number>, connections: out };
}
