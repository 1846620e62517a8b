/**
 * Consent terms in calendar time. "90 days" and "3 months" are calendar terms in the provider's time zone
 * (Europe/Berlin for the German providers), not multiples of 24 h: a term spanning a DST change is an hour
 * shorter or longer in absolute time, and three months are 89 to 92 days.
 */
import { DateTime } from 'luxon';
import type { ConsentTerm } from '../providers/types.js';

/** PSD2 RTS Art. 10: access without SCA for 90 days; counted in Berlin for the German providers. */
export const DEFAULT_CONSENT_TERM: ConsentTerm = { zone: 'Europe/Berlin', days: 90 };
/** The app is warned this long before a consent runs out. */
export const CONSENT_WARNING_MS = 7 * 24 * 60 * 60_000;

/** The instant a consent given at `grantedAt` runs out under `term`. */
export function consentExpiresAt(grantedAt: number, term: ConsentTerm = DEFAULT_CONSENT_TERM): number {
  const granted = DateTime.fromMillis(grantedAt, { zone: term.zone });
  if (!granted.isValid) throw new Error(`invalid consent time zone ${JSON.stringify(term.zone)}`);
  return granted.plus({ days: term.days ?? 0, months: term.months ?? 0 }).toMillis();
}

/** A provider's calendar date (YYYY-MM-DD, "valid until" that day inclusive) as the instant it ends in `zone`. */
export function endOfCalendarDate(date: string, zone: string): number {
  const day = DateTime.fromISO(date, { zone });
  if (!day.isValid) throw new Error(`invalid calendar date ${JSON.stringify(date)}`);
  return day.plus({ days: 1 }).startOf('day').toMillis();
}
