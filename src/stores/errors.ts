/**
 * Storage faults, worded for the operator who has to fix them (disk full, file read-only, corrupt file,
 * database unreachable). The driver's own error stays available as `cause`.
 */
import { BanksyncError } from '../engine/errors.js';

export type StorageFaultCode = 'STORE_FULL' | 'STORE_READ_ONLY' | 'STORE_CORRUPT' | 'STORE_UNAVAILABLE' | 'STORE_ERROR';

/** A BanksyncError (its code one of StorageFaultCode); the driver's error is `cause`, never in `toJSON()`. */
export class StorageError extends BanksyncError {
  override readonly name: string = 'StorageError';
  constructor(
    override readonly code: StorageFaultCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message);
    if (options && 'cause' in options) Object.defineProperty(this, 'cause', { value: options.cause, enumerable: false, writable: true, configurable: true });
  }
}

const SQLITE_FAULTS: Record<string, [StorageFaultCode, string]> = {
  SQLITE_FULL: ['STORE_FULL', 'the disk holding the SQLite database is full: free space, then restart banksync'],
  SQLITE_READONLY: ['STORE_READ_ONLY', 'the SQLite database is read-only: banksync must be able to write the file and create its -wal and -shm files next to it'],
  SQLITE_CANTOPEN: ['STORE_READ_ONLY', 'the SQLite database cannot be opened for writing: check that the file and its directory exist and are writable by banksync'],
  SQLITE_CORRUPT: ['STORE_CORRUPT', 'the SQLite database is corrupt: restore it from a backup'],
  SQLITE_NOTADB: ['STORE_CORRUPT', 'the file is not an SQLite database (or it is corrupt): check the path, or restore it from a backup'],
  SQLITE_IOERR: ['STORE_UNAVAILABLE', 'the disk holding the SQLite database reported an I/O error'],
};

/** PostgreSQL error classes that mean "the server or the connection is gone for now". */
const PG_UNAVAILABLE = /^(08|57P0[1-3]|53)/;

/** PostgreSQL faults an operator must fix (the connection string's password is never part of a message). */
const PG_FAULTS: Record<string, [StorageFaultCode, string]> = {
  '28P01': ['STORE_UNAVAILABLE', 'PostgreSQL refused the login (wrong user or password in the connection string)'],
  '28000': ['STORE_UNAVAILABLE', 'PostgreSQL refused the connection (no pg_hba.conf entry or role not allowed to log in)'],
  '3D000': ['STORE_UNAVAILABLE', 'the PostgreSQL database named in the connection string does not exist: create it or fix the URL'],
  '25006': ['STORE_READ_ONLY', 'the PostgreSQL server is read-only (a standby or default_transaction_read_only): point banksync at the primary'],
  '42501': ['STORE_ERROR', "the PostgreSQL role lacks a privilege on banksync's schema: grant it, or use the schema's owner"],
  '53100': ['STORE_FULL', 'the disk holding the PostgreSQL data is full: free space'],
  ENOTFOUND: ['STORE_UNAVAILABLE', 'the PostgreSQL host name does not resolve: check the connection string'],
};

/** The typed, operator-worded form of a store driver's error (returns StorageErrors and unknown errors as they are). */
export function toStorageError(error: unknown, where: string): unknown {
  if (error instanceof StorageError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  // pg's own errors for a connection that died under a query carry no code.
  if (code === undefined && error instanceof Error && /^(Connection terminated|Client has encountered a connection error)/.test(error.message)) {
    return new StorageError('STORE_UNAVAILABLE', `${where}: the connection to PostgreSQL was lost (${error.message}); banksync retries`, { cause: error });
  }
  if (typeof code !== 'string') return error;
  const sqlite = SQLITE_FAULTS[code] ?? SQLITE_FAULTS[code.replace(/_[A-Z]+$/, '')];
  if (sqlite) return new StorageError(sqlite[0], `${where}: ${sqlite[1]} (${code})`, { cause: error });
  const pg = PG_FAULTS[code];
  if (pg) return new StorageError(pg[0], `${where}: ${pg[1]} (${code})`, { cause: error });
  if (PG_UNAVAILABLE.test(code) || code === 'ECONNREFUSED' || code === 'ECONNRESET') {
    return new StorageError('STORE_UNAVAILABLE', `${where}: the PostgreSQL server is unreachable or restarting (${code}); banksync retries`, { cause: error });
  }
  return error;
}
