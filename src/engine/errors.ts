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
  /** The store did not take a write (disk full, database down): the step did not happen; try again. */
  | 'STORAGE_UNAVAILABLE';

export class BanksyncError extends Error {
  override readonly name: string = 'BanksyncError';
  constructor(
    readonly code: BanksyncErrorCode,
    message: string,
    readonly issues: string[] = [],
  ) {
    super(message);
  }
  toJSON(): { code: BanksyncErrorCode; message: string; issues: string[] } {
    return { code: this.code, message: this.message, issues: this.issues };
  }
}

export function invalidRequest(what: string, error: z.ZodError): BanksyncError {
  const issues = error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
  return new BanksyncError('INVALID_REQUEST', `invalid ${what}: ${issues.join('; ')}`, issues);
}
