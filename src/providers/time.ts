/**
 * Provider timestamps -> epoch ms, never in the host's time zone. A value with an offset (ISO 8601, `+0000` or
 * `+00:00`, `Z`) is read as such; one without an offset (ISO 8601 or `yyyy-MM-dd HH:mm:ss[.SSS]`) in `zone`, the
 * zone the provider documents or banksync decided for it (see each adapter). Read with luxon.
 */
import { DateTime } from 'luxon';

/** Epoch ms of a provider timestamp, or null when it is not one. */
export function parseProviderTime(value: string, zone = 'UTC'): number | null {
  const iso = DateTime.fromISO(value, { zone });
  const parsed = iso.isValid ? iso : DateTime.fromSQL(value, { zone });
  return parsed.isValid ? parsed.toMillis() : null;
}

/** ISO 8601 UTC form of a timestamp a schema already accepted. */
export function providerTimeToIso(value: string, zone = 'UTC'): string {
  const ms = parseProviderTime(value, zone);
  if (ms === null) throw new RangeError('not a provider timestamp');
  return new Date(ms).toISOString();
}
