import { createFinxAdapter } from '../../providers/finx/index.js';
import { FINX_SCENARIOS } from '../../sandbox/finx.js';
import type { Sandbox } from '../../sandbox/server.js';
import type { DemoFamily } from './types.js';

/** Demo-only API token and credentials: the sandbox accepts any; they never reach logs or the store. */
const DEMO_TOKEN = 'demo-finx-token';

export function finxDemo(sandbox: Sandbox): DemoFamily {
  const config = { baseUrl: `${sandbox.url}/finx`, token: DEMO_TOKEN };
  const adapter = createFinxAdapter(config);
  return {
    provider: 'finx',
    adapter,
    cases: FINX_SCENARIOS.map((scenario) => ({
      provider: 'finx',
      scenario: scenario.name,
      description: scenario.description,
      expect: {
        status: scenario.terminal,
        ...(scenario.errorCode ? { errorCode: scenario.errorCode } : {}),
        ...(scenario.outcome ? { outcome: scenario.outcome } : {}),
      },
      answers: scenario.answers,
      prepare: async () =>
        (
          await adapter.createAccess({
            providerId: 'sandbox-bank',
            accessMethodId: 'FINTS',
            credentials: { login: 'demo-user', pin: 'demo-pin' },
            scenario: scenario.name,
          })
        ).id,
    })),
  };
}
