/**
 * Webhook authenticity: an HMAC-SHA256 over `${timestamp}.${body}` with a secret shared with the provider,
 * sent as `x-banksync-signature: t=<unix seconds>,v1=<hex>`. Compared in constant time; the timestamp must
 * lie within a window (default 5 minutes) so a captured delivery cannot be replayed later.
 * node:crypto does the cryptography; only the header format is ours.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { WebhookRequest } from '../providers/types.js';

export const SIGNATURE_HEADER = 'x-banksync-signature';
export const DEFAULT_TOLERANCE_MS = 5 * 60_000;

export type VerificationFailure = 'MISSING_SIGNATURE' | 'MALFORMED_SIGNATURE' | 'TIMESTAMP_OUT_OF_WINDOW' | 'BAD_SIGNATURE';

export function signWebhook(secret: string, body: string, timestampSeconds: number): string {
  const digest = createHmac('sha256', secret).update(`${timestampSeconds}.${body}`).digest('hex');
  return `t=${timestampSeconds},v1=${digest}`;
}

function header(request: WebhookRequest, name: string): string | undefined {
  const value = request.headers[name] ?? request.headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

/** Null when the delivery is authentic, else why not. */
export function verifyWebhook(secret: string, request: WebhookRequest, nowMs: number, toleranceMs = DEFAULT_TOLERANCE_MS): VerificationFailure | null {
  const value = header(request, SIGNATURE_HEADER);
  if (!value) return 'MISSING_SIGNATURE';
  const parts = new Map(value.split(',').map((part) => part.trim().split('=', 2) as [string, string]));
  const t = parts.get('t');
  const v1 = parts.get('v1');
  if (!t || !v1 || !/^\d{1,12}$/.test(t) || !/^[0-9a-f]{64}$/.test(v1)) return 'MALFORMED_SIGNATURE';
  if (Math.abs(nowMs - Number(t) * 1000) > toleranceMs) return 'TIMESTAMP_OUT_OF_WINDOW';
  const expected = createHmac('sha256', secret).update(`${t}.${request.body}`).digest();
  const given = Buffer.from(v1, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected) ? null : 'BAD_SIGNATURE';
}
