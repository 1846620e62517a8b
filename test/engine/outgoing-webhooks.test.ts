/**
 * Outgoing webhooks (issue 15, point 1): every logged event reaches the app's endpoint signed per Standard
 * Webhooks (verified here with the same library), in log order, at least once, retried after failures; the
 * delivery cursor survives a restart; on PostgreSQL only one process delivers at a time.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it } from 'vitest';
import { startWebhookDelivery, type OutgoingWebhookBody, type OutgoingWebhookDelivery } from '../../src/engine/outgoing-webhooks.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { PostgresStore } from '../../src/stores/postgres.js';
import type { Store } from '../../src/stores/types.js';
import { DATABASE_URL, postgresAvailable, throwawaySchema } from '../support/postgres.js';

const secret = `whsec_${randomBytes(24).toString('base64')}`;

interface Receiver {
  url: string;
  /** Ids accepted (2xx), in arrival order. */
  accepted: string[];
  attempts: Map<string, number>;
  rejectedSignatures: number;
  /** Event ids (by arrival index) to fail on their first attempt: 'status' answers 503, 'drop' cuts the connection. */
  failFirst: Map<number, 'status' | 'drop'>;
  server: Server;
}

async function startReceiver(): Promise<Receiver> {
  const verifier = new Webhook(secret);
  const receiver = { accepted: [], attempts: new Map(), rejectedSignatures: 0, failFirst: new Map() } as unknown as Receiver;
  const seen: string[] = [];
  receiver.server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let payload: OutgoingWebhookBody;
      try {
        payload = verifier.verify(body, req.headers as Record<string, string>) as OutgoingWebhookBody;
      } catch {
        receiver.rejectedSignatures++;
        res.writeHead(401).end();
        return;
      }
      const id = req.headers['webhook-id'] as string;
      expect(payload.data.id).toBe(id);
      if (!seen.includes(id)) seen.push(id);
      const attempt = (receiver.attempts.get(id) ?? 0) + 1;
      receiver.attempts.set(id, attempt);
      const failure = receiver.failFirst.get(seen.indexOf(id));
      if (failure && attempt === 1) {
        if (failure === 'drop') req.socket.destroy();
        else res.writeHead(503).end();
        return;
      }
      receiver.accepted.push(id);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(receiver.server.address() as AddressInfo).port}/hooks?token=not-for-logs`;
  return receiver;
}

/** Writes `count` connection events through the store (as the engine does, with the connection write). */
async function writeEvents(store: Store, count: number, from = 0): Promise<string[]> {
  const ids: string[] = [];
  for (let i = from; i < from + count; i++) {
    const id = `evt_${i}`;
    ids.push(id);
    await store.saveConnection({ tenantId: 't', connectionId: `c${i}`, provider: 'finx', state: 'IDLE', context: {}, updatedAt: i }, 0, [
      { eventId: id, name: 'connection.updated', tenantId: 't', connectionId: `c${i}`, syncId: null, payload: { connectionId: `c${i}`, version: 1 }, at: 1_700_000_000_000 + i },
    ]);
  }
  return ids;
}

const firstDeliveries = (accepted: string[]) => accepted.filter((id, i) => accepted.indexOf(id) === i);

describe('outgoing webhooks', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  const fast = { retryBaseMs: 20, retryMaxMs: 200, pollMs: 100, standbyMs: 100, timeoutMs: 2_000 };

  it('delivers every event signed, in order, retrying a 503 and a dropped connection; the logs carry no URL', async () => {
    const store = new MemoryStore();
    const receiver = await startReceiver();
    cleanups.push(async () => void receiver.server.close());
    receiver.failFirst.set(3, 'status').set(7, 'drop').set(8, 'status');
    const warnings: string[] = [];
    const logger = { info() {}, error() {}, debug() {}, warn: (obj: object, msg: string) => void warnings.push(JSON.stringify({ obj, msg })) };
    const delivery = await startWebhookDelivery(store, { url: receiver.url, secret, from: 'start', logger: logger as never, ...fast });
    cleanups.push(() => delivery.stop());
    const ids = await writeEvents(store, 12);
    await expect.poll(() => firstDeliveries(receiver.accepted).length, { timeout: 20_000 }).toBe(12);
    expect(receiver.accepted).toEqual(ids);
    expect(receiver.rejectedSignatures).toBe(0);
    expect([ids[3], ids[7], ids[8]].map((id) => receiver.attempts.get(id!))).toEqual([2, 2, 2]);
    expect(delivery.failedAttempts).toBe(3);
    expect(warnings).toHaveLength(3);
    expect(warnings.join('\n')).not.toMatch(/not-for-logs|127\.0\.0\.1|whsec/);
    expect(await store.getEventCursor('webhooks.outgoing')).toBe((await store.readEvents(null, 100)).events.at(-1)!.cursor);
  });

  it('a wrong secret is caught by the receiver (the check can fail)', async () => {
    const store = new MemoryStore();
    const receiver = await startReceiver();
    cleanups.push(async () => void receiver.server.close());
    const delivery = await startWebhookDelivery(store, { url: receiver.url, secret: `whsec_${randomBytes(24).toString('base64')}`, from: 'start', ...fast });
    cleanups.push(() => delivery.stop());
    await writeEvents(store, 1);
    await expect.poll(() => receiver.rejectedSignatures, { timeout: 10_000 }).toBeGreaterThan(1);
    expect(receiver.accepted).toEqual([]);
    expect(delivery.delivered).toBe(0);
  });

  it('a restarted delivery continues from its saved cursor; "now" skips the history', async () => {
    const store = new MemoryStore();
    const receiver = await startReceiver();
    cleanups.push(async () => void receiver.server.close());
    const old = await writeEvents(store, 3);
    let delivery = await startWebhookDelivery(store, { url: receiver.url, secret, ...fast });
    const first = await writeEvents(store, 5, 100);
    await expect.poll(() => receiver.accepted.length, { timeout: 10_000 }).toBe(5);
    await delivery.stop();
    const whileDown = await writeEvents(store, 4, 200);
    delivery = await startWebhookDelivery(store, { url: receiver.url, secret, ...fast });
    cleanups.push(() => delivery.stop());
    await expect.poll(() => firstDeliveries(receiver.accepted).length, { timeout: 10_000 }).toBe(9);
    expect(firstDeliveries(receiver.accepted)).toEqual([...first, ...whileDown]);
    expect(receiver.accepted.some((id) => old.includes(id))).toBe(false);
  });

  describe.runIf(postgresAvailable)('on PostgreSQL', () => {
    it('one of two processes delivers; when it stops, the other takes over from the saved cursor', async () => {
      const schema = throwawaySchema('wh');
      const a = await PostgresStore.open({ connectionString: DATABASE_URL, schema, max: 3 });
      const b = await PostgresStore.open({ connectionString: DATABASE_URL, schema, max: 3 });
      const receiver = await startReceiver();
      cleanups.push(async () => {
        receiver.server.close();
        await a.dropSchema();
        await Promise.all([a.close(), b.close()]);
      });
      const one: OutgoingWebhookDelivery = await startWebhookDelivery(a, { url: receiver.url, secret, from: 'start', ...fast });
      const two: OutgoingWebhookDelivery = await startWebhookDelivery(b, { url: receiver.url, secret, from: 'start', ...fast });
      cleanups.push(() => two.stop());
      const ids = await writeEvents(a, 6);
      await expect.poll(() => receiver.accepted.length, { timeout: 20_000 }).toBe(6);
      expect(one.delivered + two.delivered).toBe(6);
      expect(Math.min(one.delivered, two.delivered)).toBe(0);
      const leader = one.delivered ? one : two;
      const standby = leader === one ? two : one;
      await leader.stop();
      const more = await writeEvents(b, 4, 50);
      await expect.poll(() => firstDeliveries(receiver.accepted).length, { timeout: 20_000 }).toBe(10);
      expect(firstDeliveries(receiver.accepted)).toEqual([...ids, ...more]);
      expect(standby.delivered).toBeGreaterThanOrEqual(4);
      expect(receiver.rejectedSignatures).toBe(0);
      if (leader !== one) await one.stop();
    });
  });
});
