/**
 * Webhook intake: verifies a provider's delivery (HMAC with its shared secret, see webhook-auth.ts), parses
 * it with the provider's adapter, finds the sync it names and hands it to the engine's hosting (`apply`);
 * holds, bounded, authentic deliveries that beat the trigger's answer until the sync learns its provider id;
 * keeps the most recent rejections; and serves it all as a node:http handler with its own bounded body reader.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Observation } from '../../machines/canonical.js';
import { ProviderInputError } from '../providers/errors.js';
import type { ProviderAdapter, WebhookRequest } from '../providers/types.js';
import { StorageError } from '../stores/errors.js';
import type { Store, SyncRecord } from '../stores/types.js';
import type { Clock } from './clock.js';
import { BanksyncError } from './errors.js';
import type { Logger } from './logger.js';
import { verifyWebhook, type VerificationFailure } from './webhook-auth.js';

export interface RejectedWebhook {
  provider: string;
  /** CONNECTION_MISMATCH: authentic, but it names another connection than the sync its provider id belongs to. */
  reason: VerificationFailure | 'CONNECTION_MISMATCH';
  at: number;
}

export interface WebhookIntakeOptions {
  providers: Record<string, ProviderAdapter>;
  /** Shared webhook secrets by provider (EngineOptions.webhookSecrets). */
  webhookSecrets: Record<string, string>;
  store: Pick<Store, 'findSyncByProviderRef'>;
  clock: Clock;
  logger: Logger;
  /** Applies a delivery to an active sync (the engine's hosting strategy); whether it was applied. */
  apply: (record: SyncRecord, verified: boolean, observation: Observation) => Promise<boolean>;
}

export class WebhookIntake {
  private readonly providers: Record<string, ProviderAdapter>;
  private readonly webhookSecrets: Record<string, string>;
  private readonly store: Pick<Store, 'findSyncByProviderRef'>;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly apply: WebhookIntakeOptions['apply'];
  private readonly rejectedList: RejectedWebhook[] = [];
  /**
   * Callbacks that arrived before the provider told us its id for the sync (a callback can beat the trigger
   * response). Held briefly in memory and applied once the id is known; polling finishes the job regardless.
   */
  private readonly early = new Map<string, { observation: Observation; until: number; bytes: number }[]>();
  private earlyBytes = 0;

  constructor(options: WebhookIntakeOptions) {
    this.providers = options.providers;
    this.webhookSecrets = options.webhookSecrets;
    this.store = options.store;
    this.clock = options.clock;
    this.logger = options.logger;
    this.apply = options.apply;
  }

  /**
   * Applies a provider webhook/callback. Invalid bodies throw INVALID_WEBHOOK and change nothing; a
   * delivery for an unknown or finished sync is acknowledged and ignored. Only an authenticated delivery
   * (the provider has a webhook secret) is applied as provider state; any other is a hint (`verified: false`,
   * `applied: false`): the sync reads the provider now, through its own poll.
   */
  async handle(provider: string, request: WebhookRequest): Promise<{ applied: boolean; syncId: string | null; verified: boolean }> {
    const adapter = this.providers[provider];
    if (!adapter) throw new BanksyncError('PROVIDER_NOT_CONFIGURED', `provider ${JSON.stringify(provider)} is not configured`);
    const secret = this.webhookSecrets[provider];
    const verified = secret !== undefined;
    if (secret !== undefined) {
      const failure = verifyWebhook(secret, request, this.clock.now());
      if (failure) this.rejectWebhook(provider, failure);
    }
    let delivery;
    try {
      delivery = adapter.parseWebhook(request);
    } catch (error) {
      const issues = error instanceof ProviderInputError ? error.issues : [];
      const message = error instanceof ProviderInputError ? error.message : `${provider}: unreadable webhook`;
      throw new BanksyncError('INVALID_WEBHOOK', message, issues);
    }
    const record = await this.store.findSyncByProviderRef(provider, delivery.providerRef);
    if (!record) {
      // A hint for an id nobody knows yet needs no holding: the trigger's answer starts polling anyway.
      if (verified) this.holdEarly(provider, delivery.providerRef, delivery.observation, request.body.length);
      this.logger.info({ provider }, verified ? 'webhook for an unknown provider id held until a trigger reports it' : 'unverified webhook for an unknown provider id ignored');
      return { applied: false, syncId: null, verified };
    }
    if (verified && delivery.connectionId !== undefined && delivery.connectionId !== record.connectionId) {
      this.rejectWebhook(provider, 'CONNECTION_MISMATCH');
    }
    if (!record.active) {
      this.logger.info({ provider }, 'webhook for a finished sync ignored');
      return { applied: false, syncId: record.syncId, verified };
    }
    const applied = await this.apply(record, verified, delivery.observation);
    return { applied, syncId: record.syncId, verified };
  }

  private rejectWebhook(provider: string, reason: RejectedWebhook['reason']): never {
    this.rejectedList.push({ provider, reason, at: this.clock.now() });
    if (this.rejectedList.length > REJECTED_WEBHOOKS_KEPT) this.rejectedList.shift();
    this.logger.warn({ provider, reason }, 'webhook rejected');
    throw new BanksyncError('WEBHOOK_UNAUTHORIZED', `${provider} webhook rejected: ${reason}`);
  }

  /** The most recent unverified webhook deliveries (kept for inspection; never applied). */
  rejected(): readonly RejectedWebhook[] {
    return [...this.rejectedList];
  }

  /** A node:http request listener for one provider's webhooks: `http.createServer(engine.webhookHandler('finx'))`. */
  handler(provider: string): (req: IncomingMessage, res: ServerResponse) => void {
    return (req, res) => {
      const reply = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      readBody(req, 1024 * 1024)
        .then((body) => this.handle(provider, { headers: req.headers, body }))
        .then(
          (outcome) => reply(202, outcome),
          (error: unknown) => {
            // A storage fault is the receiver's problem (500: the provider retries), not the request's.
            if (error instanceof BanksyncError && !(error instanceof StorageError)) {
              const status = error.code === 'PROVIDER_NOT_CONFIGURED' ? 404 : error.code === 'WEBHOOK_UNAUTHORIZED' ? 401 : 400;
              reply(status, { error: error.toJSON() });
            } else if (error instanceof BodyTooLargeError) {
              res.setHeader('connection', 'close');
              reply(413, { error: { code: 'INVALID_WEBHOOK', message: error.message, issues: [] } });
            } else {
              this.logger.error({ provider, err: (error as Error)?.name }, 'webhook handling failed');
              reply(500, { error: { code: 'INTERNAL', message: 'webhook could not be applied', issues: [] } });
            }
          },
        );
    };
  }

  private holdEarly(provider: string, providerRef: string, observation: Observation, bytes: number): void {
    const now = this.clock.now();
    for (const [key, held] of this.early) {
      const fresh = held.filter((h) => h.until > now);
      for (const h of held) if (h.until <= now) this.earlyBytes -= h.bytes;
      if (fresh.length) this.early.set(key, fresh);
      else this.early.delete(key);
    }
    const key = `${provider}\u0000${providerRef}`;
    const held = this.early.get(key) ?? [];
    // Bounded by ids, deliveries per id and bytes: a flood of early deliveries must not exhaust memory.
    if (
      (!held.length && this.early.size >= EARLY_CALLBACK_IDS_MAX) ||
      held.length >= EARLY_CALLBACKS_PER_ID ||
      this.earlyBytes + bytes > EARLY_CALLBACK_BYTES_MAX
    ) {
      this.logger.warn({ provider }, 'early webhook dropped: the holding area is full (polling still finishes the sync)');
      return;
    }
    this.early.set(key, [...held, { observation, until: now + EARLY_CALLBACK_TTL_MS, bytes }]);
    this.earlyBytes += bytes;
  }

  /** Early deliveries held until a trigger reports their provider id: how many, and their body bytes. */
  held(): { ids: number; deliveries: number; bytes: number } {
    let deliveries = 0;
    for (const held of this.early.values()) deliveries += held.length;
    return { ids: this.early.size, deliveries, bytes: this.earlyBytes };
  }

  /** Takes the deliveries held for a provider id a trigger just reported, those still fresh, in arrival order. */
  takeEarly(provider: string, providerRef: string): Observation[] {
    const key = `${provider}\u0000${providerRef}`;
    const held = this.early.get(key);
    if (!held) return [];
    this.early.delete(key);
    for (const h of held) this.earlyBytes -= h.bytes;
    const now = this.clock.now();
    return held.filter((h) => h.until > now).map((h) => h.observation);
  }
}

const REJECTED_WEBHOOKS_KEPT = 1_000;
const EARLY_CALLBACK_TTL_MS = 10 * 60_000;
const EARLY_CALLBACK_IDS_MAX = 10_000;
const EARLY_CALLBACKS_PER_ID = 8;
export const EARLY_CALLBACK_BYTES_MAX = 16 * 1024 * 1024;

class BodyTooLargeError extends Error {
  override readonly name = 'BodyTooLargeError';
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        // Stop buffering but keep reading, so the 413 can still be written; the reply closes the connection.
        req.removeAllListeners('data');
        req.resume();
        reject(new BodyTooLargeError(`webhook body exceeds ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
