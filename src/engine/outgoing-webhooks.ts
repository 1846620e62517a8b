/**
 * Outgoing webhooks: delivers every event of the durable event log to the app's URL, in commit order, signed
 * per the Standard Webhooks spec (webhook-id = the event's stable id, webhook-timestamp, webhook-signature)
 * with the `standardwebhooks` library. A failed delivery (network error, timeout, non-2xx) is retried with
 * exponential backoff until it succeeds; later events wait (order is kept). The delivery cursor is saved in
 * the store after each delivered event, so a restart continues where it stopped: at-least-once, deduplicate
 * by webhook-id. On PostgreSQL one process at a time delivers (a session advisory lock); others stand by.
 */
import { Webhook } from 'standardwebhooks';
import { silentLogger, type Logger } from './logger.js';
import { subscribeEvents, type BanksyncEvent, type EventSubscription } from './event-log.js';
import type { Store } from '../stores/types.js';

export interface OutgoingWebhookOptions {
  /** The app's endpoint. */
  url: string;
  /** Standard Webhooks secret (`whsec_` + base64). */
  secret: string;
  /** Name of the saved delivery cursor (one per endpoint). Default `webhooks.outgoing`. */
  consumer?: string;
  /** Without a saved cursor: deliver the whole log ('start') or only events from now on ('now', default). */
  from?: 'start' | 'now';
  /** Per attempt. Default 10 s. */
  timeoutMs?: number;
  /** Backoff of retries: base doubling up to max. Defaults 1 s and 5 min. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Fallback poll of the log. Default 1 s. */
  pollMs?: number;
  /** How often a standby process tries to take over delivery (PostgreSQL). Default 5 s. */
  standbyMs?: number;
  logger?: Logger;
  /** For tests: the fetch to use. */
  fetch?: typeof fetch;
}

export interface OutgoingWebhookDelivery {
  /** Events delivered (2xx) by this process. */
  readonly delivered: number;
  /** Failed attempts (each retried). */
  readonly failedAttempts: number;
  stop(): Promise<void>;
}

/** The JSON body of a delivery (Standard Webhooks' recommended type/timestamp/data envelope). */
export interface OutgoingWebhookBody {
  type: BanksyncEvent['name'];
  timestamp: string;
  data: Omit<BanksyncEvent, 'name'>;
}

type Lease = { release(): Promise<void>; lost: Promise<void> };
type ExclusiveStore = Store & { tryExclusive?(name: string): Promise<Lease | null> };

const forever = new Promise<void>(() => {});

export async function startWebhookDelivery(store: Store, options: OutgoingWebhookOptions): Promise<OutgoingWebhookDelivery> {
  const consumer = options.consumer ?? 'webhooks.outgoing';
  const logger = options.logger ?? silentLogger;
  const send = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const retryBaseMs = options.retryBaseMs ?? 1_000;
  const retryMaxMs = options.retryMaxMs ?? 300_000;
  const standbyMs = options.standbyMs ?? 5_000;
  // Throws for a malformed secret here, at start, rather than at the first delivery.
  const signer = new Webhook(options.secret);
  let stopped = false;
  let wakeStop!: () => void;
  const stopSignal = new Promise<void>((resolve) => (wakeStop = resolve));
  /** Resolved when this process stops leading (stop, or the lease was lost): cuts a retry wait short. */
  let leaseEnded: Promise<void> = stopSignal;
  const sleep = (ms: number) => Promise.race([new Promise<void>((resolve) => setTimeout(resolve, ms).unref?.()), stopSignal, leaseEnded]);
  const stats = { delivered: 0, failedAttempts: 0 };
  let leading = false;

  const deliver = async (event: BanksyncEvent): Promise<void> => {
    const { name, ...data } = event;
    const body = JSON.stringify({ type: name, timestamp: new Date(event.at).toISOString(), data } satisfies OutgoingWebhookBody);
    for (let attempt = 0; ; attempt++) {
      if (stopped || !leading) throw new Error('webhook delivery stopped');
      const now = new Date();
      let failure: string;
      try {
        const response = await send(options.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'webhook-id': event.id,
            'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
            'webhook-signature': signer.sign(event.id, now, body),
          },
          body,
          signal: AbortSignal.timeout(timeoutMs),
        });
        await response.body?.cancel().catch(() => {});
        if (response.ok) break;
        failure = `HTTP ${response.status}`;
      } catch (error) {
        // Never the URL or the error text (either may carry a token): the kind of failure only.
        failure = (error as Error)?.name === 'TimeoutError' ? 'timeout' : `network error (${(error as Error)?.name ?? 'unknown'})`;
      }
      stats.failedAttempts++;
      const delay = Math.min(retryMaxMs, retryBaseMs * 2 ** Math.min(attempt, 30));
      logger.warn({ eventId: event.id, attempt: attempt + 1, failure, retryInMs: delay }, 'outgoing webhook not accepted; retrying');
      await sleep(delay);
    }
    stats.delivered++;
    await store.saveEventCursor(consumer, event.cursor, Date.now());
  };

  const exclusive = (store as ExclusiveStore).tryExclusive?.bind(store);
  const lead = async (): Promise<void> => {
    while (!stopped) {
      let lease: Lease | null;
      try {
        lease = exclusive ? await exclusive(`webhooks:${consumer}`) : { release: async () => {}, lost: forever };
      } catch (error) {
        logger.warn({ err: (error as Error)?.name }, 'outgoing webhooks: could not reach the store; retrying');
        lease = null;
      }
      if (!lease) {
        await sleep(standbyMs);
        continue;
      }
      let subscription: EventSubscription | null = null;
      try {
        let after = await store.getEventCursor(consumer);
        if (after === null && options.from !== 'start') {
          after = await store.latestEventCursor();
          // Saved at once: a restart continues from here, not from a later "now".
          if (after !== null) await store.saveEventCursor(consumer, after, Date.now());
        }
        leading = true;
        leaseEnded = Promise.race([lease.lost, stopSignal]);
        subscription = await subscribeEvents(store, {
          after,
          onEvent: deliver,
          onError: (error) => {
            if (!stopped && leading) logger.warn({ err: (error as Error)?.message }, 'outgoing webhooks: reading the log failed; retrying');
          },
          ...(options.pollMs !== undefined ? { pollMs: options.pollMs } : {}),
        });
        await leaseEnded;
      } catch (error) {
        logger.warn({ err: (error as Error)?.name }, 'outgoing webhooks: delivery interrupted; retrying');
        await sleep(standbyMs);
      } finally {
        leading = false;
        leaseEnded = stopSignal;
        await subscription?.close();
        await lease.release();
      }
    }
  };
  const running = lead();

  return {
    get delivered() {
      return stats.delivered;
    },
    get failedAttempts() {
      return stats.failedAttempts;
    },
    async stop() {
      stopped = true;
      wakeStop();
      await running;
    },
  };
}
