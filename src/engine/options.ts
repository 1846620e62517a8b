/**
 * Sync options are persisted: they are the machine's input, so they live in the stored snapshot, in the
 * dispatch job's payload, and reach the inspector. Only option keys the provider adapter declares safe
 * (`ProviderAdapter.safeOptionKeys`: switches and settings, never credentials or tokens) are accepted; any
 * other key fails the request with INVALID_REQUEST before anything is stored. The message lists the allowed
 * keys, never the rejected keys or any value (a caller's key could itself be a secret).
 */
import type { ProviderAdapter } from '../providers/types.js';
import { BanksyncError } from './errors.js';

export function assertSafeOptions(provider: string, adapter: ProviderAdapter, options: Record<string, unknown> | undefined): void {
  if (!options) return;
  const allowed = adapter.safeOptionKeys ?? [];
  const rejected = Object.keys(options).filter((key) => !allowed.includes(key)).length;
  if (rejected === 0) return;
  const keys = allowed.length > 0 ? `the ${provider} adapter declares only ${allowed.join(', ')}` : `the ${provider} adapter declares none`;
  const issue = `options: ${rejected} key${rejected === 1 ? '' : 's'} not declared safe to store (${keys})`;
  throw new BanksyncError('INVALID_REQUEST', `invalid sync request: ${issue}; sync options are stored with the sync, so secrets must never be passed as options`, [issue]);
}
