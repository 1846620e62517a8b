/**
 * Storage faults, worded for the operator who has to fix them (disk full, file read-only, corrupt file,
 * database unreachable). The driver's own error stays available as `cause`.
 */
export type StorageFaultCode = 'STORE_FULL' | 'STORE_READ_ONLY' | 'STORE_CORRUPT' | 'STORE_UNAVAILABLE' | 'STORE_ERROR';

export class StorageError extends Error {
  override readonly name = 'StorageError';
  constructor(
    readonly code: StorageFaultCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
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

/** The typed, operator-worded form of a store driver's error (returns StorageErrors and unknown errors as they are). */
export function toStorageError(error: unknown, where: string): unknown {
  if (error instanceof StorageError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return error;
  const sqlite = SQLITE_FAULTS[code] ?? SQLITE_FAULTS[code.replace(/_[A-Z]+$/, '')];
  if (sqlite) return new StorageError(sqlite[0], `${where}: ${sqlite[1]} (${code})`, { cause: error });
  if (PG_UNAVAILABLE.test(code) || code === 'ECONNREFUSED' || code === 'ECONNRESET') {
    return new StorageError('STORE_UNAVAILABLE', `${where}: the PostgreSQL server is unreachable or restarting (${code}); banksync retries`, { cause: error });
  }
  return error;
}
