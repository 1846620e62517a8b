/** `--inspect [port]`: stream every hosted actor to the Stately inspector (see README, "Live Stately inspector"). */
import { createStatelyInspector, type StatelyInspector } from '../engine/inspect.js';

export async function openInspector(option: boolean | string | undefined): Promise<StatelyInspector | null> {
  if (!option) return null;
  const port = typeof option === 'string' ? Number(option) : undefined;
  if (port !== undefined && (!Number.isInteger(port) || port <= 0 || port > 65_535)) throw new Error(`--inspect ${option}: expected a port number`);
  const inspector = await createStatelyInspector(port !== undefined ? { port } : {});
  process.stdout.write(`Stately inspector: open ${inspector.url}\n`);
  return inspector;
}
