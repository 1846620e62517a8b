/**
 * Challenge responses (TANs) live only here, in memory, keyed by an opaque ref that the machine carries.
 * They never reach a snapshot, the store, a log or an event; a restart forgets them, and the user is asked again.
 */
import { randomUUID } from 'node:crypto';

export class SecretVault {
  private readonly secrets = new Map<string, { syncId: string; value: string }>();

  put(syncId: string, value: string): string {
    const ref = `resp_${randomUUID()}`;
    this.secrets.set(ref, { syncId, value });
    return ref;
  }

  /** Returns the secret once and forgets it: an answer is sent at most once. */
  take(ref: string): string | undefined {
    const entry = this.secrets.get(ref);
    this.secrets.delete(ref);
    return entry?.value;
  }

  forgetSync(syncId: string): void {
    for (const [ref, entry] of this.secrets) if (entry.syncId === syncId) this.secrets.delete(ref);
  }

  get size(): number {
    return this.secrets.size;
  }
}
