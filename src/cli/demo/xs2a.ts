import { createXs2aAdapter } from '../../providers/xs2a/index.js';
import { XS2A_SCENARIOS } from '../../sandbox/xs2a.js';
import type { Sandbox } from '../../sandbox/server.js';
import type { DemoFamily } from './types.js';

/** Demo-only API token and credentials: the sandbox accepts any; they never reach logs or the store. */
const DEMO_TOKEN = 'demo-xs2a-token';

/**
 * xs2a cases. The simulated user opens the wizard link of WEB_FORM challenges (run.ts); for the `reset` case the
 * user resets the connection and completes the new wizard before the sync is requested.
 */
export function xs2aDemo(sandbox: Sandbox): DemoFamily {
  const adapter = createXs2aAdapter({ baseUrl: `${sandbox.url}/xs2a`, token: DEMO_TOKEN });
  return {
    provider: 'xs2a',
    adapter,
    cases: XS2A_SCENARIOS.map((scenario) => ({
      provider: 'xs2a',
      scenario: scenario.name,
      description: scenario.description,
      expect: {
        status: scenario.terminal,
        ...(scenario.errorCode ? { errorCode: scenario.errorCode } : {}),
        ...(scenario.outcome ? { outcome: scenario.outcome } : {}),
      },
      answers: [],
      ...(scenario.options ? { options: { ...scenario.options } } : {}),
      prepare: async () => {
        const connection = await adapter.createConnection({
          bankName: 'Sandbox Bank',
          credentials: { login: 'demo-user', pin: 'demo-pin' },
          scenario: scenario.name,
        });
        if (scenario.resetFirst) {
          const wizard = await adapter.reset(connection.id);
          const page = await fetch(wizard.redirectUrl);
          await page.arrayBuffer();
          if (!page.ok) throw new Error(`xs2a demo: the reset wizard answered HTTP ${page.status}`);
        }
        return connection.id;
      },
    })),
  };
}
