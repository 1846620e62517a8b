/**
 * Issue 12, point 8: the Stately inspector bridge relays every hosted sync's states; it must listen on
 * loopback only and answer only to localhost Host names.
 */
import { request } from 'node:http';
import { createServer } from 'node:net';
import { networkInterfaces } from 'node:os';
import { createWebSocketReceiver } from '@statelyai/inspect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActor, createMachine } from 'xstate';
import { createStatelyInspector, type StatelyInspector } from '../../src/engine/inspect.js';

let port: number;
let inspector: StatelyInspector;
beforeAll(async () => {
  port = await new Promise<number>((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address() as { port: number };
      probe.close(() => resolve(free));
    });
  });
  inspector = await createStatelyInspector({ port });
});
afterAll(async () => {
  await inspector?.stop();
});

function get(host: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host, port, path: '/', headers }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(-1));
    req.end();
  });
}

describe('inspector bridge', () => {
  it('is not reachable on a non-loopback address of this machine', async () => {
    const external = Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
    expect(await get('127.0.0.1')).toBe(200);
    if (external) expect(await get(external)).toBe(-1);
  });

  it('refuses foreign Host names (DNS rebinding)', async () => {
    expect(await get('127.0.0.1', { host: '127.evil.example' })).toBe(403);
    expect(await get('127.0.0.1', { host: `localhost:${port}` })).toBe(200);
  });

  it('relays inspection events to a local inspector client', async () => {
    const receiver = createWebSocketReceiver({ server: `ws://127.0.0.1:${port}` });
    const seen: { type: string }[] = [];
    receiver.subscribe((event) => seen.push(event as { type: string }));
    const actor = createActor(createMachine({ id: 'probe', initial: 'a', states: { a: { on: { GO: 'b' } }, b: {} } }), { inspect: inspector.inspect });
    actor.start();
    actor.send({ type: 'GO' });
    await expect.poll(() => seen.some((e) => e.type === '@xstate.snapshot'), { timeout: 5_000 }).toBe(true);
    actor.stop();
  });
});
