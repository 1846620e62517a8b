/**
 * finAPI timestamps -> epoch ms, whatever the host's time zone.
 *
 * Web Form 2.0 documents `yyyy-MM-dd'T'HH:mm:ss.SSSZ` (an offset such as `+0000`); Access v1 sends German local
 * time without an offset (`yyyy-MM-dd HH:mm:ss.SSS`). A value without an offset is therefore read as
 * Europe/Berlin local time, never in the host's zone. Daylight saving time, as luxon resolves it: a wall time in
 * the spring gap (02:00-03:00 on the last Sunday of March) is moved forward one hour (02:30 -> 03:30 CEST); a wall
 * time in the autumn overlap (02:00-03:00 twice on the last Sunday of October) is read as the second occurrence
 * (CET, UTC+1).
 */
import { parseProviderTime } from '../time.js';

export const FINAPI_TIME_ZONE = 'Europe/Berlin';

/** Epoch ms of a finAPI timestamp, or null when it is not one. */
export function parseFinapiTime(value: string): number | null {
  return parseProviderTime(value, FINAPI_TIME_ZONE);
}

/** ISO 8601 UTC form of a finAPI timestamp the schema already accepted. */
export function finapiTimeToIso(value: string): string {
  const ms = parseFinapiTime(value);
  if (ms === null) throw new RangeError('not a finAPI timestamp');
  return new Date(ms).toISOString();
}
