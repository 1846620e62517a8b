import type { SyncPolicy } from '../../../machines/synchronization.js';

/** Fast timings so the whole demo runs in seconds against the sandbox; never for a real provider. */
export const DEMO_POLICY: Partial<SyncPolicy> = {
  pollBaseMs: 40,
  pollMaxMs: 300,
  authPollMs: 80,
  retryBaseMs: 100,
  retryMaxMs: 1_500,
  syncDeadlineMs: 60_000,
};
