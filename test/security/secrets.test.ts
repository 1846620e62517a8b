/**
 * Secrets never leak, for every provider family in the registry. A property generates random secrets (the
 * credentials given to the connection helper, the TANs a user submits, the provider API token, the webhook
 * secret), runs real syncs over HTTP against the sandbox (signed webhooks, a debug-level pino logger writing into
 * a buffer, a provider that echoes the secrets back in an error body) and provokes the engine's error paths.
 * Then it scans EVERYTHING the engine wrote or returned: every row of every store table and the raw bytes of the
 * SQLite files (WAL included), every emitted event, every log line, every thrown error, every webhook reply,
 * rejectedWebhooks(), and the API's own views. No secret may appear, raw, JSON-escaped or URL-encoded.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/engine/logger.js';
import { SIGNATURE_HEADER, signWebhook } from '../../src/engine/webhook-auth.js';
import { FAMILIES, FAMILY_FIXTURES, fixtureFor } from '../reliability/families.js';
import { dumpSqlite, httpPost, startRig } from '../reliability/rig.js';

const RUNS_PER_FAMILY = 8;

interface Secrets {
  token: string;
  webhookSecret: string;
  login: string;
  pin: string;
  tan: string;
}

/** High-entropy strings only: a secret must never "appear" by coincidence (timestamps, ids...). */
const distinctive = (min: number) => (s: string) => s.length >= min && new Set(s).size >= 6;
const secretsArb: fc.Arbitrary<Secrets> = fc.record({
  // What an API token looks like on the wire (header-safe).
  token: fc.stringMatching(/^[A-Za-z0-9._~+/-]{16,48}$/).filter(distinctive(16)),
  // HMAC keys and credentials may be any text.
  webhookSecret: fc.string({ minLength: 12, maxLength: 48, unit: 'grapheme' }).filter(distinctive(12)),
  login: fc.string({ minLength: 10, maxLength: 32, unit: 'grapheme-ascii' }).filter(distinctive(10)),
  pin: fc.string({ minLength: 10, maxLength: 32, unit: 'grapheme' }).filter(distinctive(10)),
  // Alphanumeric so it is a plausible (wrong) TAN; never the sandbox's correct one.
  tan: fc.stringMatching(/^[A-Za-z0-9]{10,20}$/).filter(distinctive(10)),
});

function forms(secret: string): string[] {
  return [...new Set([secret, JSON.stringify(secret).slice(1, -1), encodeURIComponent(secret)])];
}

describe.each(FAMILIES)('secrets never leak: %s', (family) => {
  if (!FAMILY_FIXTURES[family]) {
    it('has a security fixture', () => {
      fixtureFor(family);
    });
    return;
  }

  it(`${RUNS_PER_FAMILY} runs with random credentials, TANs, API token and webhook secret`, async () => {
    const fx = fixtureFor(family);
    await fc.assert(
      fc.asyncProperty(secretsArb, async (secrets) => {
        const dir = mkdtempSync(join(tmpdir(), 'banksync-secrets-'));
        const logLines: string[] = [];
        const destination = new Writable({
          write(chunk, _encoding, callback) {
            logLines.push(String(chunk));
            callback();
          },
        });
        let canary = '';
        const rig = await startRig(family, {
          logger: createLogger({ level: 'debug', destination }),
          webhookSecrets: { [family]: secrets.webhookSecret },
          token: secrets.token,
          storePath: join(dir, 'engine.sqlite'),
        });
        const sinks: Record<string, string[]> = { events: [], errors: [], replies: [], views: [] };
        const keep = (sink: string, value: unknown) => sinks[sink]!.push(typeof value === 'string' ? value : JSON.stringify(value));
        const catching = async (work: () => Promise<unknown>) => {
          try {
            keep('views', await work());
          } catch (error) {
            const e = error as Error & { issues?: unknown };
            keep('errors', `${e.name} ${e.message} ${JSON.stringify(e)} ${JSON.stringify(e.issues ?? null)}`);
          }
        };
        try {
          for (const name of ['sync.updated', 'sync.awaitingUser', 'sync.completed', 'sync.failed', 'connection.updated'] as const) {
            rig.engine.events.on(name, (payload) => keep('events', { name, payload }));
          }
          const embedded = 'correctTan' in fx.embedded;
          const connectionId = await rig.connect(embedded ? 'embedded' : 'success', { login: secrets.login, pin: secrets.pin });
          canary = connectionId;
          // A provider that echoes what it got back in an error body (first trigger answered 503, then 429).
          const echo = JSON.stringify({ error: { code: 'SERVICE_UNAVAILABLE', message: `token ${secrets.token} login ${secrets.login} pin ${secrets.pin}` }, detail: secrets });
          const isTrigger = (r: { method: string; path: string }) => fx.classify(r.method, r.path) === 'trigger';
          rig.proxy.inject({ name: 'echo-503', match: isTrigger, times: 1, action: { kind: 'respond', status: 503, body: echo } });
          rig.proxy.inject({ name: 'echo-429', match: isTrigger, times: 1, action: { kind: 'respond', status: 429, headers: { 'retry-after': '1' }, body: echo } });
          rig.relay.mode = 'pass';
          const view = await rig.engine.requestSync({ connectionId, provider: family });
          // The user first types the (wrong) secret TAN, then the right one.
          const answers = embedded ? [secrets.tan, (fx.embedded as { correctTan: string }).correctTan] : [];
          const final = await rig.drive(view.syncId, { answers });
          expect(final.status).toBe('COMPLETED');
          if (embedded) expect(fx.counters(rig.sandbox.stats(), connectionId).answers).toBe(2);

          // Error paths fed with the secrets.
          await catching(() => rig.engine.submitChallengeResponse(final.syncId, { challengeId: 'chl_nope', response: secrets.tan }));
          await catching(() => rig.engine.submitChallengeResponse(final.syncId, { challengeId: 'chl_nope', response: secrets.tan.repeat(300) }));
          await catching(() => rig.engine.requestSync({ connectionId: secrets.login.repeat(30), provider: family }));
          await catching(() => rig.engine.requestSync({ connectionId, provider: family, options: { password: secrets.pin, token: secrets.token } as never, scope: secrets.pin as never }));
          await catching(() => rig.engine.registerConnection({ connectionId, provider: family, consentGrantedAt: secrets.pin as never }));
          await catching(() => rig.engine.get(final.syncId, { tenantId: secrets.login }));
          // Deliveries signed with a wrong secret (the real one's neighbours) and a body full of secrets.
          const t = Math.floor(rig.clock.now() / 1000);
          for (const key of [`${secrets.webhookSecret}x`, secrets.token, '']) {
            const body = JSON.stringify({ leak: secrets, webhookSecret: secrets.webhookSecret });
            const reply = await httpPost(rig.engineWebhookUrl, { 'content-type': 'application/json', [SIGNATURE_HEADER]: signWebhook(key, body, t) }, body);
            expect(reply.status).toBe(401);
          }
          // Correctly signed garbage that quotes the secrets: authenticated, then rejected as INVALID_WEBHOOK.
          const garbage = JSON.stringify({ secret: secrets.webhookSecret, token: secrets.token, tan: secrets.tan });
          await httpPost(rig.engineWebhookUrl, { 'content-type': 'application/json', [SIGNATURE_HEADER]: signWebhook(secrets.webhookSecret, garbage, t) }, garbage);
          await catching(() => rig.engine.handleWebhook(family, { headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: signWebhook(secrets.webhookSecret, garbage, t) }, body: garbage }));

          keep('views', await rig.engine.list({}));
          keep('views', await rig.engine.history(final.syncId));
          keep('views', await rig.engine.getConnection(connectionId));
          keep('views', rig.engine.rejectedWebhooks());
          for (const reply of rig.engineReplies) keep('replies', reply);
          sinks.store = [dumpSqlite(rig.store)];
        } finally {
          await rig.close();
        }
        // The SQLite files as bytes (main file and whatever WAL/SHM is left).
        const files = readdirSync(dir).map((name) => ({ name, bytes: readFileSync(join(dir, name)) }));
        rmSync(dir, { recursive: true, force: true });
        sinks.logs = logLines;
        expect(logLines.length, 'the debug logger saw the engine work').toBeGreaterThan(0);

        // Positive control: the scan does see what the engine writes (the connection id is everywhere).
        expect(sinks.store!.some((v) => v.includes(canary)), 'scanner sees the store').toBe(true);
        expect(sinks.events!.some((v) => v.includes(canary)), 'scanner sees the events').toBe(true);
        expect(files.some((f) => f.bytes.includes(Buffer.from(canary))), 'scanner sees the file bytes').toBe(true);

        const leaks: string[] = [];
        for (const [kind, secret] of Object.entries(secrets)) {
          for (const form of forms(secret)) {
            for (const [sink, values] of Object.entries(sinks)) if (values.some((v) => v.includes(form))) leaks.push(`${kind} in ${sink}`);
            for (const file of files) if (file.bytes.includes(Buffer.from(form, 'utf8'))) leaks.push(`${kind} in the bytes of ${file.name}`);
          }
        }
        expect([...new Set(leaks)]).toEqual([]);
      }),
      { numRuns: RUNS_PER_FAMILY, endOnFailure: true },
    );
  }, 120_000);
});
