/**
 * Issue 12, point 9: the e2e harness used to swallow what the simulated user's steps threw, so a failure
 * surfaced as a test timeout. It must surface as itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFinxAdapter } from '../../src/providers/finx/index.js';
import { startHarness, type Harness } from '../support/harness.js';

let harness: Harness;
beforeAll(async () => {
  harness = await startHarness((sandbox) => ({ finx: createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 'harness' }) }));
});
afterAll(async () => {
  await harness?.close();
});

describe('e2e harness', () => {
  it("rejects runSync with the simulated user's error instead of waiting for a timeout", async () => {
    const finx = createFinxAdapter({ baseUrl: `${harness.sandbox.url}/finx`, token: 'harness' });
    const access = await finx.createAccess({ providerId: 'b', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario: 'one-challenge' });
    // An empty answer is refused by the engine (INVALID_REQUEST).
    await expect(harness.runSync('finx', access.id, [''])).rejects.toThrow(/harness: answering the challenge .* failed: invalid challenge response/);
  });
});
