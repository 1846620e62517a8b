/** Typed errors of the public engine API. Each has a stable `code`; none carries secrets. */
import type { z } from 'zod';

export type BanksyncErrorCode =
  | 'INVALID_REQUEST'
  | 'SYNC_NOT_FOUND'
  | 'PROVIDER_NOT_CONFIGURED'
  | 'CHALLENGE_NOT_PENDING'
  | 'SYNC_ALREADY_FINISHED'
  | 'INVALID_WEBHOOK'
  | 'WEBHOOK_UNAUTHORIZED'
  | 'SYNC_REFUSED'
  | 'CONNECTION_NOT_FOUND'
  | 'ENGINE_STOPPED'
  /** A configuration file or option is invalid (the message names the field). */
  | 'INVALID_CONFIG'
  /** The store did not take a write (disk full, database down): the step did not happen; try again. */
  | 'STORAGE_UNAVAILABLE'
  /** Storage faults (StorageError, src/stores/errors.ts), worded for the operator who fixes them. */
  | 'STORE_FULL'
  | 'STORE_READ_ONLY'
  | 'STORE_CORRUPT'
  | 'STORE_UNAVAILABLE'
  | 'STORE_ERROR';

export class BanksyncError extends Error {
  override readonly name: string = 'BanksyncError';
  constructor(
    readonly code: BanksyncErrorCode,
    message: string,
    readonly issues: string[] = [],
    /** For a refusal that passes with time (cooldown, the PSD2 budget): when the sync may start (epoch ms). */
    readonly nextAttemptAt: number | null = null,
  ) {
    super(message);
  }
  toJSON(): { code: BanksyncErrorCode; message: string; issues: string[]; nextAttemptAt?: number } {
    return { code: this.code, message: this.message, issues: this.issues, ...(this.nextAttemptAt !== null ? { nextAttemptAt: this.nextAttemptAt } : {}) };
  }
}

export function invalidRequest(what: string, error: z.ZodError): BanksyncError {
  const issues = error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
  return new BanksyncError('INVALID_REQUEST', `invalid ${what}: ${issues.join('; ')}`, issues);
}
