/**
 * Challenge responses (TANs) live only here, in memory, keyed by an opaque ref that the machine carries.
 * They never reach a snapshot, the store, a log or an event; a restart forgets them, and the user is asked again.
 *
 * Providers echo what they were sent: a TAN in an error code, "PIN 4711 and password=..." in a message.
 * Everything a provider says is scrubbed (see scrubFailure/scrubObservation) before it is stored or emitted.
 */
import { randomUUID } from 'node:crypto';
import type { EffectFailure, Observation } from '../../machines/canonical.js';

export const REDACTED = '[redacted]';

export class SecretVault {
  private readonly secrets = new Map<string, { syncId: string; value: string }>();
  /** Answers already sent, per sync: a provider may echo them later (an error code, a message). */
  private readonly spent = new Map<string, Set<string>>();

  put(syncId: string, value: string): string {
    const ref = `resp_${randomUUID()}`;
    this.secrets.set(ref, { syncId, value });
    return ref;
  }

  /** Returns the secret once and forgets it: an answer is sent at most once. */
  take(ref: string): string | undefined {
    const entry = this.secrets.get(ref);
    this.secrets.delete(ref);
    if (entry) this.spent.set(entry.syncId, (this.spent.get(entry.syncId) ?? new Set()).add(entry.value));
    return entry?.value;
  }

  /** Every secret of the sync this process still knows (pending and sent answers), for scrubbing. */
  known(syncId: string): string[] {
    const pending = [...this.secrets.values()].filter((e) => e.syncId === syncId).map((e) => e.value);
    return [...pending, ...(this.spent.get(syncId) ?? [])];
  }

  forgetSync(syncId: string): void {
    for (const [ref, entry] of this.secrets) if (entry.syncId === syncId) this.secrets.delete(ref);
    this.spent.delete(syncId);
  }

  get size(): number {
    return this.secrets.size;
  }
}

const LABEL = String.raw`\b(pins?|tans?|otp|one[- ]time (?:password|code)|passwor[dt]s?|passphrase|passcode|kennwort|geheimzahl|secret|api[_ -]?key|access[_ -]?token|refresh[_ -]?token|token|bearer|credentials?|login|username|user)\b`;
const VALUE = String.raw`("[^"]*"|'[^']*'|[^\s,;)"']+)`;
/** A secret's label, a separator and its value: "password=hunter2", "TAN: 123456", "PIN ist 4711". */
const LABELLED_SECRET = new RegExp(`${LABEL}(\\s*(?:[:=]|\\b(?:is|was|ist|lautet)\\b)\\s*)${VALUE}`, 'giu');
/** Label and value with only a space between: a value only if it has a digit ("PIN 4711", not "PIN blocked"). */
const SPACED_SECRET = new RegExp(`${LABEL}(\\s+)("[^"]*"|'[^']*'|[^\\s,;)"']*\\d[^\\s,;)"']*)`, 'giu');
/** Known secrets shorter than this are not searched for: "12" would redact every 12 in a message. */
const MIN_KNOWN_SECRET = 4;

/** Removes known secrets and labelled secret values from provider text. */
export function scrubText(text: string, known: readonly string[] = []): string {
  let out = text;
  for (const secret of known) if (secret.length >= MIN_KNOWN_SECRET) out = out.split(secret).join(REDACTED);
  const redact = (_match: string, label: string, separator: string) => `${label}${separator}${REDACTED}`;
  return out.replace(LABELLED_SECRET, redact).replace(SPACED_SECRET, redact);
}

/** A provider's error code is kept only when it carries no known secret. */
export function scrubCode(code: string, known: readonly string[] = []): string {
  return known.some((secret) => secret.length >= MIN_KNOWN_SECRET && code.includes(secret)) ? REDACTED : code;
}

export function scrubFailure<T extends Pick<EffectFailure, 'message' | 'providerCode'>>(failure: T, known: readonly string[] = []): T {
  return {
    ...failure,
    message: scrubText(failure.message, known),
    ...(failure.providerCode !== undefined ? { providerCode: scrubCode(failure.providerCode, known) } : {}),
  };
}

export function scrubObservation(observation: Observation, known: readonly string[] = []): Observation {
  if (observation.status === 'FAILED') return { ...observation, error: scrubFailure(observation.error, known) };
  if (observation.status === 'AWAIT_AUTH' && observation.challenge.message !== undefined) {
    return { ...observation, challenge: { ...observation.challenge, message: scrubText(observation.challenge.message, known) } };
  }
  return observation;
}
