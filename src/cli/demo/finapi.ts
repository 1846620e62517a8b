import { createFinapiAdapter } from '../../providers/finapi/index.js';
import { FINAPI_SCENARIOS, createFinapiSandboxConnection } from '../../sandbox/finapi.js';
import type { Sandbox } from '../../sandbox/server.js';
import type { DemoFamily } from './types.js';

/** Demo-only finAPI user access token: the sandbox accepts any; it never reaches logs or the store. */
const DEMO_TOKEN = 'demo-finapi-token';

/**
 * Every finAPI sandbox scenario. Web form challenges (kind WEB_FORM) are completed by the demo's simulated
 * user, who opens `challenge.redirectUrl`; the scenario decides how that visit ends. Callbacks go to the
 * sandbox's webhook URL for `finapi` (the demo points it at the engine's webhook handler).
 */
export function finapiDemo(sandbox: Sandbox): DemoFamily {
  const baseUrl = `${sandbox.url}/finapi`;
  const adapter = createFinapiAdapter({ baseUrl, token: DEMO_TOKEN });
  return {
    provider: 'finapi',
    adapter,
    cases: FINAPI_SCENARIOS.map((scenario) => ({
      provider: 'finapi',
      scenario: scenario.name,
      description: scenario.description,
      expect: {
        status: scenario.terminal,
        ...(scenario.errorCode ? { errorCode: scenario.errorCode } : {}),
        ...(scenario.outcome ? { outcome: scenario.outcome } : {}),
      },
      answers: scenario.answers,
      ...(scenario.options ? { options: scenario.options } : {}),
      prepare: async () => String((await createFinapiSandboxConnection(baseUrl, DEMO_TOKEN, scenario.name)).id),
    })),
  };
}
