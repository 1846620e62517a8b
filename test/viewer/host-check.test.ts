/**
 * Issue 12, point 8: the viewer on a loopback address answers only to the Host names a local browser
 * sends, matched exactly (DNS rebinding: `127.evil.example` resolves to 127.0.0.1 but is another site).
 */
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type SyncEngine } from '../../src/engine/engine.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { startViewer, type Viewer } from '../../src/viewer/index.js';
import { FakeAdapter } from '../support/fake-adapter.js';

let engine: SyncEngine;
let viewer: Viewer;
beforeAll(async () => {
  engine = createEngine({ store: new MemoryStore(), providers: { fake: new FakeAdapter('fake', {}) } });
  viewer = await startViewer({ engine });
});
afterAll(async () => {
  await viewer?.close();
  await engine?.stop();
});

function statusFor(host: string): Promise<number> {
  const url = new URL(viewer.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: '/api/syncs', headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('viewer Host check', () => {
  it('answers to localhost, 127.0.0.1 and [::1], with or without its port', async () => {
    const port = new URL(viewer.url).port;
    for (const host of ['localhost', `localhost:${port}`, '127.0.0.1', `127.0.0.1:${port}`, `[::1]:${port}`, `LOCALHOST:${port}`]) {
      expect(await statusFor(host), host).toBe(200);
    }
  });

  it('refuses look-alike and foreign names', async () => {
    const port = new URL(viewer.url).port;
    const hosts = ['127.evil.example', `127.evil.example:${port}`, 'localhost.evil.example', '127.0.0.1.nip.io', 'attacker.example', `localhost:${Number(port) + 1}`];
    const answered = [];
    for (const host of hosts) answered.push(`${host} ${await statusFor(host)}`);
    expect(answered).toEqual(hosts.map((host) => `${host} 403`));
  });
});
