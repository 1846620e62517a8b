/** A provider family's contribution to `banksync demo`: its adapter against the sandbox and its scripted cases. */
import type { SyncErrorCode, SyncResult } from '../../../machines/canonical.js';
import type { ProviderAdapter } from '../../providers/types.js';
import type { Sandbox } from '../../sandbox/server.js';

export interface DemoCase {
  provider: string;
  scenario: string;
  description: string;
  /** What the sandbox script says the sync must end as. */
  expect: { status: 'COMPLETED' | 'FAILED'; errorCode?: SyncErrorCode; outcome?: SyncResult['outcome'] };
  /** Answers the simulated user types, in order, for embedded challenges. */
  answers: readonly string[];
  /** Provider-specific, non-secret sync options (e.g. finAPI importNewAccounts). */
  options?: Record<string, unknown>;
  /** Creates the provider-side connection for this case and returns its id. */
  prepare(): Promise<string>;
}

export interface DemoFamily {
  provider: string;
  adapter: ProviderAdapter;
  cases: DemoCase[];
}

export type DemoFamilyFactory = (sandbox: Sandbox) => DemoFamily;
