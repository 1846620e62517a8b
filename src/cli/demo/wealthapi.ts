import { createWealthAdapter } from '../../providers/wealthapi/index.js';
import { WEALTHAPI_SCENARIOS } from '../../sandbox/wealthapi.js';
import type { Sandbox } from '../../sandbox/server.js';
import type { DemoFamily } from './types.js';

/** Demo-only API token and credentials: the sandbox accepts any; they never reach logs or the store. */
const DEMO_TOKEN = 'demo-wealthapi-token';

export function wealthapiDemo(sandbox: Sandbox): DemoFamily {
  const adapter = createWealthAdapter({ baseUrl: `${sandbox.url}/wealthapi`, token: DEMO_TOKEN });
  return {
    provider: 'wealthapi',
    adapter,
    cases: WEALTHAPI_SCENARIOS.map((scenario) => ({
      provider: 'wealthapi',
      scenario: scenario.name,
      description: scenario.description,
      expect: {
        status: scenario.terminal,
        ...(scenario.errorCode ? { errorCode: scenario.errorCode } : {}),
        ...(scenario.outcome ? { outcome: scenario.outcome } : {}),
      },
      answers: [],
      prepare: async () =>
        (await adapter.createConnection({ name: 'Sandbox Broker', credentials: { login: 'demo-user', pin: 'demo-pin' }, scenario: scenario.name })).id,
    })),
  };
}
