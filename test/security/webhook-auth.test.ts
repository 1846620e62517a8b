/**
 * Callback authenticity, for every provider family in the registry (extends test/engine/webhook-auth.test.ts):
 * random tamperings of a real, signed delivery for an active sync (body bit flips, timestamps shifted within and
 * beyond the window without re-signing, re-signed beyond the window, wrong secrets, another body's signature,
 * header garbage) are never applied: HTTP 401, recorded in rejectedWebhooks() with the right reason, no store
 * write, no event, no secret in the reply. Correctly signed deliveries inside the window are accepted.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_TOLERANCE_MS, SIGNATURE_HEADER, signWebhook, type VerificationFailure } from '../../src/engine/webhook-auth.js';
import { FAMILIES, FAMILY_FIXTURES, fixtureFor } from '../reliability/families.js';
import { httpPost, startRig, type Rig } from '../reliability/rig.js';

const SECRET = 'whsec_7Rk2-sandbox-callbacks-91f3';
const RUNS = 400;
const WINDOW_S = DEFAULT_TOLERANCE_MS / 1000;

type Tampering =
  | { kind: 'bit-flip'; at: number; bit: number }
  | { kind: 'shift-unsigned'; seconds: number }
  | { kind: 'resigned-beyond-window'; seconds: number }
  | { kind: 'wrong-secret'; secret: string }
  | { kind: 'other-body'; suffix: string }
  | { kind: 'header-garbage'; header: string | string[] | undefined }
  | { kind: 'digest-damage'; at: number; char: string }
  | { kind: 'header-case'; upper: boolean };

const tampering: fc.Arbitrary<Tampering> = fc.oneof(
  fc.record({ kind: fc.constant('bit-flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 6 }) }),
  fc.record({ kind: fc.constant('shift-unsigned' as const), seconds: fc.integer({ min: -10 * WINDOW_S, max: 10 * WINDOW_S }).filter((s) => s !== 0) }),
  fc.record({
    kind: fc.constant('resigned-beyond-window' as const),
    seconds: fc.oneof(fc.integer({ min: WINDOW_S + 2, max: 10 ** 7 }), fc.integer({ min: -(10 ** 7), max: -(WINDOW_S + 2) })),
  }),
  fc.record({ kind: fc.constant('wrong-secret' as const), secret: fc.string({ minLength: 0, maxLength: 40 }).filter((s) => s !== SECRET) }),
  fc.record({ kind: fc.constant('other-body' as const), suffix: fc.string({ minLength: 1, maxLength: 8 }) }),
  fc.record({
    kind: fc.constant('header-garbage' as const),
    header: fc.oneof(
      fc.constant(undefined),
      fc.string({ maxLength: 80 }),
      fc.stringMatching(/^t=\d{0,14},v1=[0-9a-fA-F]{0,70}$/),
      fc.constantFrom('t=,v1=', 'v1=' + '0'.repeat(64), 't=1', ',,,', 't=1700000000,v1=' + 'g'.repeat(64), 't=-5,v1=' + 'a'.repeat(64)),
    ),
  }),
  fc.record({ kind: fc.constant('digest-damage' as const), at: fc.nat(63), char: fc.constantFrom(...'0123456789abcdefABCDEF') }),
  fc.record({ kind: fc.constant('header-case' as const), upper: fc.constant(true) }),
);

/** The reason a tampering must be rejected with, when it is determined by the tampering alone. */
function expectedReason(t: Tampering): VerificationFailure | null {
  switch (t.kind) {
    case 'bit-flip':
    case 'wrong-secret':
    case 'other-body':
      return 'BAD_SIGNATURE';
    case 'resigned-beyond-window':
      return 'TIMESTAMP_OUT_OF_WINDOW';
    case 'shift-unsigned':
      return Math.abs(t.seconds) > WINDOW_S + 1 ? 'TIMESTAMP_OUT_OF_WINDOW' : Math.abs(t.seconds) < WINDOW_S - 1 ? 'BAD_SIGNATURE' : null;
    default:
      return null; // garbage headers: MISSING, MALFORMED or BAD depending on what was generated
  }
}

describe.each(FAMILIES)('callback authenticity: %s', (family) => {
  if (!FAMILY_FIXTURES[family]) {
    it('has a security fixture', () => {
      fixtureFor(family);
    });
    return;
  }
  let rig: Rig;
  let syncId: string;
  let body: string;

  beforeAll(async () => {
    rig = await startRig(family, { webhookSecrets: { [family]: SECRET } });
    const fx = rig.fixture;
    const connectionId = await rig.connect('success');
    rig.relay.mode = 'hold';
    const view = await rig.engine.requestSync({ connectionId, provider: family });
    const waiting = await rig.drive(view.syncId, { until: (v) => v.providerRef !== null && v.state === 'RUNNING.Waiting' });
    syncId = waiting.syncId;
    // A delivery about this very sync that the engine would apply: the last one the sandbox sent, or a documented
    // in-progress one. A family without callbacks gets a body in its dialect that authenticates but never parses.
    const aboutThisSync = (b: string) => {
      try {
        return rig.adapter.parseWebhook({ headers: { 'content-type': 'application/json' }, body: b }).providerRef === waiting.providerRef;
      } catch {
        return false;
      }
    };
    const real = rig.relay.captured.map((c) => c.body).filter(aboutThisSync).at(-1);
    body =
      'unsupported' in fx.webhook
        ? JSON.stringify({ event: 'update.finished', processId: waiting.providerRef })
        : (real ?? fx.webhook.inProgress(waiting.providerRef!, connectionId));
    if (!('unsupported' in fx.webhook)) expect(aboutThisSync(body), 'the delivery under test is about the active sync').toBe(true);
  }, 60_000);
  afterAll(() => rig?.close());

  const nowSeconds = () => Math.floor(rig.clock.now() / 1000);
  const post = (headers: Record<string, string | string[]>, payload: string) =>
    httpPost(rig.engineWebhookUrl, { 'content-type': 'application/json', ...(headers as Record<string, string>) }, payload);

  function tamper(t: Tampering): { headers: Record<string, string | string[]>; payload: string } {
    const ts = nowSeconds();
    const genuine = signWebhook(SECRET, body, ts);
    switch (t.kind) {
      case 'bit-flip': {
        const i = t.at % body.length;
        const flipped = String.fromCharCode(body.charCodeAt(i) ^ (1 << t.bit));
        return { headers: { [SIGNATURE_HEADER]: genuine }, payload: `${body.slice(0, i)}${flipped}${body.slice(i + 1)}` };
      }
      case 'shift-unsigned':
        return { headers: { [SIGNATURE_HEADER]: genuine.replace(/^t=\d+/, `t=${ts + t.seconds}`) }, payload: body };
      case 'resigned-beyond-window':
        return { headers: { [SIGNATURE_HEADER]: signWebhook(SECRET, body, Math.max(0, ts + t.seconds)) }, payload: body };
      case 'wrong-secret':
        return { headers: { [SIGNATURE_HEADER]: signWebhook(t.secret, body, ts) }, payload: body };
      case 'other-body':
        return { headers: { [SIGNATURE_HEADER]: signWebhook(SECRET, `${body}${t.suffix}`, ts) }, payload: body };
      case 'header-garbage':
        return { headers: t.header === undefined ? {} : { [SIGNATURE_HEADER]: t.header }, payload: body };
      case 'digest-damage': {
        const [, digest] = genuine.split(',v1=') as [string, string];
        const damaged = `${digest.slice(0, t.at)}${t.char}${digest.slice(t.at + 1)}`;
        if (damaged.toLowerCase() === digest) return { headers: { [SIGNATURE_HEADER]: `t=${ts},v1=${damaged}x` }, payload: body };
        return { headers: { [SIGNATURE_HEADER]: `t=${ts},v1=${damaged}` }, payload: body };
      }
      case 'header-case':
        return { headers: { [SIGNATURE_HEADER]: genuine.toUpperCase() }, payload: body };
    }
  }

  it(`${RUNS} random tamperings of a signed delivery: never applied, recorded, 401`, async () => {
    const writes = rig.store.db.prepare('SELECT total_changes() AS n');
    const changesBefore = (writes.get() as { n: number }).n;
    const view = await rig.engine.get(syncId);
    const events: string[] = [];
    const off = (['sync.updated', 'sync.awaitingUser', 'sync.completed', 'sync.failed', 'connection.updated'] as const).map((n) =>
      rig.engine.events.on(n, () => events.push(n)),
    );
    const reasons = new Map<string, number>();
    try {
      await fc.assert(
        fc.asyncProperty(tampering, async (t) => {
          const { headers, payload } = tamper(t);
          // Non-latin1 garbage cannot be sent as an HTTP header at all; Node refuses before anything leaves.
          if (Object.values(headers).some((h) => typeof h === 'string' && !/^[\t\x20-\x7e\x80-\xff]*$/.test(h))) return;
          const before = rig.engine.rejectedWebhooks().length;
          const last = rig.engine.rejectedWebhooks().at(-1);
          const reply = await post(headers, payload);
          expect(reply.status, `${JSON.stringify(t)} -> ${reply.body}`).toBe(401);
          expect(JSON.parse(reply.body).error.code).toBe('WEBHOOK_UNAUTHORIZED');
          expect(reply.body).not.toContain(SECRET);
          const rejected = rig.engine.rejectedWebhooks();
          const recorded = rejected.at(-1)!;
          expect(rejected.length === before ? recorded !== last : rejected.length === before + 1, 'recorded').toBe(true);
          expect(recorded.provider).toBe(family);
          const expected = expectedReason(t);
          if (expected) expect(recorded.reason, JSON.stringify(t)).toBe(expected);
          reasons.set(recorded.reason, (reasons.get(recorded.reason) ?? 0) + 1);
          expect((writes.get() as { n: number }).n, 'no store write').toBe(changesBefore);
        }),
        { numRuns: RUNS, endOnFailure: true },
      );
    } finally {
      off.forEach((f) => f());
    }
    console.info(`[auth] ${family} rejections by reason: ${JSON.stringify(Object.fromEntries(reasons))}`);
    expect(events).toEqual([]);
    expect(await rig.engine.get(syncId)).toEqual(view);
    expect(JSON.stringify(rig.engine.rejectedWebhooks())).not.toContain(SECRET);
  }, 120_000);

  it('a correctly signed delivery inside the window (either side) authenticates; the same one outside does not', async () => {
    const parses = (() => {
      try {
        rig.adapter.parseWebhook({ headers: { 'content-type': 'application/json' }, body });
        return true;
      } catch {
        return false;
      }
    })();
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: -(WINDOW_S - 2), max: WINDOW_S - 2 }), async (shift) => {
        const reply = await post({ [SIGNATURE_HEADER]: signWebhook(SECRET, body, nowSeconds() + shift) }, body);
        // Authenticated: applied (or acknowledged) when the family's parser accepts it, else a typed 400.
        if (parses) {
          expect(reply.status).toBe(202);
          expect(JSON.parse(reply.body)).toEqual({ applied: true, syncId, verified: true });
        } else {
          expect(reply.status).toBe(400);
          expect(JSON.parse(reply.body).error.code).toBe('INVALID_WEBHOOK');
        }
      }),
      { numRuns: 30 },
    );
    const stale = await post({ [SIGNATURE_HEADER]: signWebhook(SECRET, body, nowSeconds() - WINDOW_S - 2) }, body);
    expect(stale.status).toBe(401);
    expect(rig.engine.rejectedWebhooks().at(-1)!.reason).toBe('TIMESTAMP_OUT_OF_WINDOW');
  });
});
