/**
 * Every provider time reading gives the same instants whatever the host's time zone: the readings run under
 * several zones in this process (Node re-reads `process.env.TZ` when it is assigned) and must agree. The whole
 * time-touching suites also run under TZ=UTC and TZ=America/New_York with test/tz/run-matrix.sh.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { FinapiReading, finapiSchemas, taskEvent, webFormEvent } from '../../src/providers/finapi/index.js';
import { parseFinapiTime } from '../../src/providers/finapi/time.js';
import { parseProviderTime } from '../../src/providers/time.js';
import { wizardChallenge } from '../../src/providers/xs2a/mapping.js';

const ZONES = ['UTC', 'America/New_York', 'Europe/Berlin', 'Asia/Kathmandu', 'Pacific/Chatham'];
const original = process.env.TZ;
afterAll(() => {
  if (original === undefined) delete process.env.TZ;
  else process.env.TZ = original;
});

const FINAPI_TIMES = [
  '2025-03-01T10:00:00.000+0000',
  '2025-03-01T10:00:00.000',
  '2025-07-01 10:00:00.000',
  '2025-03-30T02:30:00.000',
  '2025-10-26 02:30:00.000',
];
const OTHER_TIMES = ['2025-03-01T10:00:00Z', '2025-03-01T10:00:00', '2025-03-01 10:00:00', '2025-03-01T10:00:00+01:00'];
const NOW = Date.parse('2025-03-01T10:00:00.000Z');

/** What a host zone could change: parsed instants and the deadlines derived from them. */
function readings(): unknown {
  const task = finapiSchemas.FinapiTask.parse({
    id: '946db09e-5bfc-11eb-ae93-0242ac130002',
    createdAt: '2025-03-01T11:00:00.000',
    type: 'BANK_CONNECTION_UPDATE',
    status: 'WEB_FORM_REQUIRED',
    payload: { bankConnectionId: 1, webForm: { id: '31c508d8-51da-11eb-ae93-0242ac130002', url: 'https://webform.finapi.io/x', status: 'NOT_YET_OPENED' } },
  });
  const webForm = finapiSchemas.FinapiWebForm.parse({
    id: '31c508d8-51da-11eb-ae93-0242ac130002',
    url: 'https://webform.finapi.io/x',
    createdAt: '2025-03-01T11:00:00.000',
    expiresAt: '2025-03-01T11:20:00.000',
    type: 'BANK_CONNECTION_UPDATE',
    status: 'NOT_YET_OPENED',
    payload: { bankConnectionId: 1, errorCode: null },
  });
  const challenge = new FinapiReading().apply(taskEvent(task, 'getTask')).apply(webFormEvent(webForm)).observation('poll', NOW);
  return {
    finapi: FINAPI_TIMES.map(parseFinapiTime),
    others: OTHER_TIMES.map((t) => parseProviderTime(t)),
    challenge,
    xs2aWizard: wizardChallenge('key', '2025-03-01 10:30:00', { wizardUrl: (k) => `https://w/${k}`, now: () => NOW }).expiresAt,
  };
}

describe('provider times under different host zones', () => {
  it('switching process.env.TZ really changes the host zone (or this test proves nothing)', () => {
    const offsets = ZONES.map((zone) => {
      process.env.TZ = zone;
      return new Date(NOW).getTimezoneOffset();
    });
    expect(new Set(offsets).size).toBe(ZONES.length);
  });

  it('every zone reads the same instants', () => {
    const byZone = ZONES.map((zone) => {
      process.env.TZ = zone;
      return JSON.stringify(readings());
    });
    for (const reading of byZone) expect(reading).toBe(byZone[0]);
    // ...and they are the documented ones (Berlin for finAPI without an offset, UTC for the others).
    process.env.TZ = 'UTC';
    expect(parseFinapiTime('2025-03-01T11:20:00.000')).toBe(Date.parse('2025-03-01T10:20:00.000Z'));
  });
});
