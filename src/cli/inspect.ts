/** `--inspect [port]`: stream every hosted actor to the Stately inspector (see README, "Live Stately inspector"). */
import type { StatelyInspector } from '../engine/inspect.js';
import { loadFor } from './peers.js';

export async function openInspector(option: boolean | string | undefined): Promise<StatelyInspector | null> {
  if (!option) return null;
  const port = typeof option === 'string' ? Number(option) : undefined;
  if (port !== undefined && (!Number.isInteger(port) || port <= 0 || port > 65_535)) throw new Error(`--inspect ${option}: expected a port number`);
  // @statelyai/inspect is an optional peer: loaded only when --inspect is given.
  const { createStatelyInspector } = await loadFor('--inspect', () => import('../engine/inspect.js'));
  const inspector = await createStatelyInspector(port !== undefined ? { port } : {});
  process.stdout.write(`Stately inspector: open ${inspector.url}\n`);
  return inspector;
}
